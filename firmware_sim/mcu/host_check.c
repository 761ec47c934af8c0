/* Host driver for the bit-exactness check: decode every latent of a file, write every logit.
 *
 *   host_check latents.bin logits.bin      (N x INPUT_SIZE int8 in, N x OUTPUT_SIZE int8 out)
 *
 * Built by firmware_sim.measure with -DVAE_EDGE_DECODER_H='"<m>_decoder.h"' -DVAE_EDGE_DECODE=<m>_decode
 * -DVAE_EDGE_INPUT_SIZE=<D> -DVAE_EDGE_OUTPUT_SIZE=<H*W*C>, under -fsanitize=address,undefined.
 */
#include <stdint.h>
#include <stdio.h>

#include VAE_EDGE_DECODER_H

int main(int argc, char **argv) {
  FILE *in, *out;
  int8_t z[VAE_EDGE_INPUT_SIZE], logits[VAE_EDGE_OUTPUT_SIZE];
  long n = 0;
  if (argc != 3) {
    fprintf(stderr, "usage: %s latents.bin logits.bin\n", argv[0]);
    return 2;
  }
  in = fopen(argv[1], "rb");
  out = fopen(argv[2], "wb");
  if (!in || !out) {
    fprintf(stderr, "error: cannot open %s or %s\n", argv[1], argv[2]);
    return 2;
  }
  while (fread(z, 1, sizeof z, in) == sizeof z) {
    if (VAE_EDGE_DECODE(z, logits) != 0 || fwrite(logits, 1, sizeof logits, out) != sizeof logits) return 1;
    ++n;
  }
  fclose(in);
  if (fclose(out) != 0) return 1;
  printf("decoded %ld\n", n);
  return 0;
}
