/* Cortex-M DSP inner loops (SXTB16, SMLAD; mac_2x1 in inline asm), chosen where __ARM_FEATURE_DSP is set.
 * The 2x2 and 1x2 kernels for each of the model's pixel strides follow in dsp_strided.h.
 * On its own: arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -std=c99 -Wall -Wextra -Werror -c -include dsp.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_DSP_H_
#define VAE_EDGE_KERNELS_DSP_H_
#include "common.h"
/* vae-edge: copy begin */
#include <arm_acle.h>
#define VAE_EDGE_DSP 1
#define VAE_EDGE_SIMD128 0
/* Of four channels c0..c3 an activation row holds c0 c2 c1 c3: the int16 pairs (c0, c2) and (c1, c3) line up
 * with the pairs SXTB16 and SXTB16 ROR #8 make of a weight word, so no weight needs reordering. */
#define ACT_INDEX(c) (((c) & ~3) | ((((c) & 1) << 1) | (((c) >> 1) & 1)))

static inline uint32_t sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}

/* Two int16 activations as one word. Activation rows start word-aligned and hold an even number of int16,
 * so these loads are aligned (and the compiler may pair them into LDRD); may_alias because the rows are
 * int16_t arrays. */
typedef uint32_t __attribute__((may_alias, aligned(4))) act_word_t;
#define load32(p) (*(const act_word_t *)(const void *)(p))

/* Two pixels (x, x + sb) x two channels (interleaved words w), n inputs: 16 MACs per step. */
#define MAC_2X2_STEP(W, X)                        \
  do {                                            \
    const uint32_t u = (W)[0], v = (W)[1];        \
    const uint32_t pe = load32(X), po = load32((X) + 2); \
    const uint32_t qe = load32((X) + sb), qo = load32((X) + sb + 2); \
    uint32_t e = __sxtb16(u), o = sxtb16_ror8(u); \
    a0 = __smlad(e, pe, a0);                      \
    a0 = __smlad(o, po, a0);                      \
    a1 = __smlad(e, qe, a1);                      \
    a1 = __smlad(o, qo, a1);                      \
    e = __sxtb16(v);                              \
    o = sxtb16_ror8(v);                           \
    a2 = __smlad(e, pe, a2);                      \
    a2 = __smlad(o, po, a2);                      \
    a3 = __smlad(e, qe, a3);                      \
    a3 = __smlad(o, qo, a3);                      \
  } while (0)

VAE_EDGE_INLINE const uint32_t *mac_2x2_c(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int i;
  for (i = n >> 3; i > 0; --i) {
    MAC_2X2_STEP(w, x);
    MAC_2X2_STEP(w + 2, x + 4);
    w += 4;
    x += 8;
  }
  if (n & 4) {
    MAC_2X2_STEP(w, x);
    w += 2;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

/* One channel (consecutive words w), two pixels (x, x + sb): acc[0], acc[1]. */
VAE_EDGE_INLINE const uint32_t *mac_1x2_c(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
  int32_t a0 = acc[0], a1 = acc[1];
  const uint32_t *end = w + n / 4;
  while (w < end) {
    const uint32_t u = *w++;
    const uint32_t e = __sxtb16(u), o = sxtb16_ror8(u);
    a0 = __smlad(e, load32(x), a0);
    a0 = __smlad(o, load32(x + 2), a0);
    a1 = __smlad(e, load32(x + sb), a1);
    a1 = __smlad(o, load32(x + sb + 2), a1);
    x += 4;
  }
  acc[0] = a0;
  acc[1] = a1;
  return w;
}

/* Two channels (interleaved words w), one pixel x: acc[0] and acc[2]. 8 MACs a pass: LDRD weights, LDRD inputs,
 * 4 SXTB16, 4 SMLAD (inline asm: GCC pairs neither load). */
VAE_EDGE_INLINE const uint32_t *mac_2x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0], a2 = acc[2];
  uint32_t u, v, e, p0, p1;
  int passes = n >> 2;
  if (passes > 0) {
    __asm__ volatile(
        "1:\n\t"
        "ldrd %[u], %[v], [%[w]], #8\n\t"
        "ldrd %[p0], %[p1], [%[x]], #8\n\t"
        "sxtb16 %[e], %[u]\n\t"
        "sxtb16 %[u], %[u], ror #8\n\t"
        "smlad %[a0], %[e], %[p0], %[a0]\n\t"
        "smlad %[a0], %[u], %[p1], %[a0]\n\t"
        "sxtb16 %[e], %[v]\n\t"
        "sxtb16 %[v], %[v], ror #8\n\t"
        "smlad %[a2], %[e], %[p0], %[a2]\n\t"
        "smlad %[a2], %[v], %[p1], %[a2]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        : [w] "+r"(w), [x] "+r"(x), [n] "+r"(passes), [a0] "+r"(a0), [a2] "+r"(a2), [u] "=&r"(u), [v] "=&r"(v),
          [e] "=&r"(e), [p0] "=&r"(p0), [p1] "=&r"(p1)
        :
        : "cc", "memory");
  }
  acc[0] = a0;
  acc[2] = a2;
  return w;
}

/* One channel, one pixel: acc[0]. */
VAE_EDGE_INLINE const uint32_t *mac_1x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0];
  int i;
  for (i = n >> 2; i > 0; --i) {
    const uint32_t u = *w++;
    a0 = __smlad(__sxtb16(u), load32(x), a0);
    a0 = __smlad(sxtb16_ror8(u), load32(x + 2), a0);
    x += 4;
  }
  acc[0] = a0;
  return w;
}
/* vae-edge: copy end */
#endif
