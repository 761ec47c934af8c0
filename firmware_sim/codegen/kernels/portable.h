/* Portable C inner loops (mac_2x2, mac_1x2, mac_2x1, mac_1x1): the build with -DVAE_EDGE_PORTABLE and
 * any target without Cortex-M DSP or 128-bit SIMD.
 * On its own: gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only -include portable.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_PORTABLE_H_
#define VAE_EDGE_KERNELS_PORTABLE_H_
#include "common.h"
/* vae-edge: copy begin */
#define VAE_EDGE_DSP 0
#define VAE_EDGE_SIMD128 0
/* Portable path: activations in natural channel order, plain C; the same integer sums as the DSP path, added
 * in another order (integer addition is exact, so the bytes are the same). */
#define ACT_INDEX(c) (c)

static inline int32_t weight_byte(uint32_t word, int j) { return (int32_t)(int8_t)(uint8_t)(word >> (8 * j)); }

VAE_EDGE_INLINE const uint32_t *mac_2x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int g, j;
  for (g = 0; g < n / 4; ++g, w += 2, x += 4) {
    for (j = 0; j < 4; ++j) {
      const int32_t u = weight_byte(w[0], j), v = weight_byte(w[1], j);
      const int32_t p = x[j], q = x[sb + j];
      a0 += u * p;
      a1 += u * q;
      a2 += v * p;
      a3 += v * q;
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
  int32_t a0 = acc[0], a1 = acc[1];
  int g, j;
  for (g = 0; g < n / 4; ++g, ++w, x += 4) {
    for (j = 0; j < 4; ++j) {
      const int32_t u = weight_byte(w[0], j);
      a0 += u * x[j];
      a1 += u * x[sb + j];
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_2x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0], a2 = acc[2];
  int g, j;
  for (g = 0; g < n / 4; ++g, w += 2, x += 4) {
    for (j = 0; j < 4; ++j) {
      a0 += weight_byte(w[0], j) * x[j];
      a2 += weight_byte(w[1], j) * x[j];
    }
  }
  acc[0] = a0;
  acc[2] = a2;
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0];
  int g, j;
  for (g = 0; g < n / 4; ++g, ++w, x += 4) {
    for (j = 0; j < 4; ++j) a0 += weight_byte(w[0], j) * x[j];
  }
  acc[0] = a0;
  return w;
}
/* vae-edge: copy end */
#endif
