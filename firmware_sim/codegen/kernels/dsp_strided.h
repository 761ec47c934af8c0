/* Cortex-M DSP 2x2 and 1x2 kernels with the pixel stride as an LDRD offset, one per stride the model's layers
 * use, and the mac_2x2 / mac_1x2 that pick one (folded at compile time, the stride being a layer constant).
 * 32 MACs a pass of mac_2x2_sb: 4 LDR + 4 LDRD + 8 SXTB16 + 16 SMLAD + SUBS/BNE, the loads paired, which GCC
 * does not do for the C (mac_2x2_c in dsp.h, also what any other stride or channel count takes).
 *
 * Template: emit.py writes each #if VAE_EDGE_EACH_STRIDE block once per pixel stride sb (input channels times
 * the layer's input step Q) whose second pixel is within LDRD's reach (8 <= 2 sb <= 1028), with {sb} the stride
 * and {qoff} = 2 sb - 8 the second pixel's byte offset after the first LDRD's post-increment; the markers
 * themselves are not copied. On its own (no stride: the C kernels only): arm-none-eabi-gcc -mcpu=cortex-m4
 * -mthumb -std=c99 -Wall -Wextra -Werror -c -include dsp_strided.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_DSP_STRIDED_H_
#define VAE_EDGE_KERNELS_DSP_STRIDED_H_
#include "dsp.h"
/* vae-edge: copy begin */
#if VAE_EDGE_EACH_STRIDE
VAE_EDGE_INLINE const uint32_t *mac_2x2_sb{sb}(const uint32_t *w, const int16_t *x, int n, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  uint32_t u, e, p0, p1, q0, q1;
  int passes = n >> 3;
  __asm__ volatile(
    "1:\n\t"
    "ldr %[u], [%[w]], #4\n\t"
    "ldrd %[p0], %[p1], [%[x]], #8\n\t"
    "ldrd %[q0], %[q1], [%[x], #{qoff}]\n\t"
    "sxtb16 %[e], %[u]\n\t"
    "sxtb16 %[u], %[u], ror #8\n\t"
    "smlad %[a0], %[e], %[p0], %[a0]\n\t"
    "smlad %[a1], %[e], %[q0], %[a1]\n\t"
    "smlad %[a0], %[u], %[p1], %[a0]\n\t"
    "smlad %[a1], %[u], %[q1], %[a1]\n\t"
    "ldr %[u], [%[w]], #4\n\t"
    "sxtb16 %[e], %[u]\n\t"
    "sxtb16 %[u], %[u], ror #8\n\t"
    "smlad %[a2], %[e], %[p0], %[a2]\n\t"
    "smlad %[a3], %[e], %[q0], %[a3]\n\t"
    "smlad %[a2], %[u], %[p1], %[a2]\n\t"
    "smlad %[a3], %[u], %[q1], %[a3]\n\t"
    "ldr %[u], [%[w]], #4\n\t"
    "ldrd %[p0], %[p1], [%[x]], #8\n\t"
    "ldrd %[q0], %[q1], [%[x], #{qoff}]\n\t"
    "sxtb16 %[e], %[u]\n\t"
    "sxtb16 %[u], %[u], ror #8\n\t"
    "smlad %[a0], %[e], %[p0], %[a0]\n\t"
    "smlad %[a1], %[e], %[q0], %[a1]\n\t"
    "smlad %[a0], %[u], %[p1], %[a0]\n\t"
    "smlad %[a1], %[u], %[q1], %[a1]\n\t"
    "ldr %[u], [%[w]], #4\n\t"
    "sxtb16 %[e], %[u]\n\t"
    "sxtb16 %[u], %[u], ror #8\n\t"
    "smlad %[a2], %[e], %[p0], %[a2]\n\t"
    "smlad %[a3], %[e], %[q0], %[a3]\n\t"
    "smlad %[a2], %[u], %[p1], %[a2]\n\t"
    "smlad %[a3], %[u], %[q1], %[a3]\n\t"
    "subs %[n], %[n], #1\n\t"
    "bne 1b\n\t"
    : [w] "+r"(w), [x] "+r"(x), [n] "+r"(passes), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
      [u] "=&r"(u), [e] "=&r"(e), [p0] "=&r"(p0), [p1] "=&r"(p1), [q0] "=&r"(q0), [q1] "=&r"(q1)
    :
    : "cc", "memory");
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

#endif /* VAE_EDGE_EACH_STRIDE */
#if VAE_EDGE_EACH_STRIDE
VAE_EDGE_INLINE const uint32_t *mac_1x2_sb{sb}(const uint32_t *w, const int16_t *x, int n, int32_t acc[2]) {
  int32_t a0 = acc[0], a1 = acc[1];
  uint32_t u, e, p0, p1, q0, q1;
  int passes = n >> 3;
  __asm__ volatile(
    "1:\n\t"
    "ldr %[u], [%[w]], #4\n\t"
    "ldrd %[p0], %[p1], [%[x]], #8\n\t"
    "ldrd %[q0], %[q1], [%[x], #{qoff}]\n\t"
    "sxtb16 %[e], %[u]\n\t"
    "sxtb16 %[u], %[u], ror #8\n\t"
    "smlad %[a0], %[e], %[p0], %[a0]\n\t"
    "smlad %[a1], %[e], %[q0], %[a1]\n\t"
    "smlad %[a0], %[u], %[p1], %[a0]\n\t"
    "smlad %[a1], %[u], %[q1], %[a1]\n\t"
    "ldr %[u], [%[w]], #4\n\t"
    "ldrd %[p0], %[p1], [%[x]], #8\n\t"
    "ldrd %[q0], %[q1], [%[x], #{qoff}]\n\t"
    "sxtb16 %[e], %[u]\n\t"
    "sxtb16 %[u], %[u], ror #8\n\t"
    "smlad %[a0], %[e], %[p0], %[a0]\n\t"
    "smlad %[a1], %[e], %[q0], %[a1]\n\t"
    "smlad %[a0], %[u], %[p1], %[a0]\n\t"
    "smlad %[a1], %[u], %[q1], %[a1]\n\t"
    "subs %[n], %[n], #1\n\t"
    "bne 1b\n\t"
    : [w] "+r"(w), [x] "+r"(x), [n] "+r"(passes), [a0] "+r"(a0), [a1] "+r"(a1),
      [u] "=&r"(u), [e] "=&r"(e), [p0] "=&r"(p0), [p1] "=&r"(p1), [q0] "=&r"(q0), [q1] "=&r"(q1)
    :
    : "cc", "memory");
  acc[0] = a0;
  acc[1] = a1;
  return w;
}

#endif /* VAE_EDGE_EACH_STRIDE */
VAE_EDGE_INLINE const uint32_t *mac_1x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
#if VAE_EDGE_EACH_STRIDE
  if (sb == {sb} && n >= 8 && (n & 7) == 0) return mac_1x2_sb{sb}(w, x, n, acc);
#endif /* VAE_EDGE_EACH_STRIDE */
  return mac_1x2_c(w, x, sb, n, acc);
}

VAE_EDGE_INLINE const uint32_t *mac_2x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
#if VAE_EDGE_EACH_STRIDE
  if (sb == {sb} && n >= 8 && (n & 7) == 0) return mac_2x2_sb{sb}(w, x, n, acc);
#endif /* VAE_EDGE_EACH_STRIDE */
  return mac_2x2_c(w, x, sb, n, acc);
}
/* vae-edge: copy end */
#endif
