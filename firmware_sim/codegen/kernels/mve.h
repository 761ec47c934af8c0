/* Helium (Arm MVE, Cortex-M55) inner loops (mac_2x2, mac_1x2, mac_2x1, mac_1x1), chosen where __ARM_FEATURE_MVE
 * is set (before the DSP loops, which the M55 also has). They read the packed weights of common.h as they are:
 * eight inputs a step, each channel's eight weights widened from int8 to int16 lanes by one VLDRB.S16 (a gather
 * with byte offsets 0-3, 8-11 for a channel pair's interleaved words, a plain load for a lone channel's
 * consecutive words), the eight int16 activations by one VLDRH, and one VMLADAVA.S16 per channel and pixel: the
 * same int32 sums as the portable loops, added in another order (integer addition is exact). An input count
 * with a last group of four takes one step on lanes 0-3, the loads predicated (the other lanes read as zero,
 * nothing past the end is read). mac_2x2, most of a decode's MACs, runs sixteen inputs a pass in inline asm.
 * The gathers keep the one weight layout of every build but cost more cycles than contiguous loads (the M55
 * gathers element by element); a Helium weight layout with each channel's eight bytes together would make
 * them plain VLDRB.S16 loads.
 * On its own: arm-none-eabi-gcc -mcpu=cortex-m55 -mthumb -mfloat-abi=hard -std=c99 -Wall -Wextra -Werror -c
 * -include mve.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_MVE_H_
#define VAE_EDGE_KERNELS_MVE_H_
#include "common.h"
/* vae-edge: copy begin */
#include <arm_mve.h>
#define VAE_EDGE_DSP 0
#define VAE_EDGE_SIMD128 0
/* Activations in natural channel order: eight consecutive int16 are inputs 8g..8g+7, as the weights' bytes. */
#define ACT_INDEX(c) (c)

/* Byte offsets of one channel's weights for inputs 8g..8g+7 among a channel pair's 16 bytes (its words 2g and
 * 2g+1 alternate with the other channel's): 0 1 2 3 8 9 10 11; the pair's second channel is 4 bytes on. */
VAE_EDGE_INLINE uint16x8_t mve_pair_offsets(void) {
  const uint16x8_t i = vidupq_n_u16(0, 1);
  return vaddq_u16(i, vandq_u16(i, vdupq_n_u16(4)));
}

#define MVE_BYTES(w) ((const int8_t *)(const void *)(w))
#define MVE_WORDS(b) ((const uint32_t *)(const void *)(b))

/* Two pixels (x, x + sb) x two channels (interleaved words w), n inputs. Sixteen inputs a pass in inline asm
 * (64 MACs: 4 VLDRH + 4 gathers + 8 VMLADAVA + ADD + LE; GCC 12 spills the four offset vectors of the C and
 * recomputes pointers), the accumulators in even registers as VMLADAVA wants them; the C steps the rest. */
VAE_EDGE_INLINE const uint32_t *mac_2x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
  const int8_t *b = MVE_BYTES(w);
  const int16_t *y = x + sb;
  const uint16x8_t o0 = mve_pair_offsets(), o1 = vaddq_n_u16(o0, 4);
  const int passes = n >> 4;
  int32_t a0, a1, a2, a3;
  if (passes > 0) {
    const uint16x8_t o2 = vaddq_n_u16(o0, 16), o3 = vaddq_n_u16(o0, 20);
    int16x8_t u, v, p, q;
    __asm__ volatile(
        "ldrd r4, r6, [%[acc]]\n\t"
        "ldrd r8, r10, [%[acc], #8]\n\t"
        "dls lr, %[n]\n"
        "1:\n\t"
        "vldrh.u16 %q[p], [%[x]], #16\n\t"
        "vldrh.u16 %q[q], [%[y]], #16\n\t"
        "vldrb.s16 %q[u], [%[b], %q[o0]]\n\t"
        "vldrb.s16 %q[v], [%[b], %q[o1]]\n\t"
        "vmladava.s16 r4, %q[u], %q[p]\n\t"
        "vmladava.s16 r6, %q[u], %q[q]\n\t"
        "vmladava.s16 r8, %q[v], %q[p]\n\t"
        "vmladava.s16 r10, %q[v], %q[q]\n\t"
        "vldrh.u16 %q[p], [%[x]], #16\n\t"
        "vldrh.u16 %q[q], [%[y]], #16\n\t"
        "vldrb.s16 %q[u], [%[b], %q[o2]]\n\t"
        "vldrb.s16 %q[v], [%[b], %q[o3]]\n\t"
        "add %[b], %[b], #32\n\t"
        "vmladava.s16 r4, %q[u], %q[p]\n\t"
        "vmladava.s16 r6, %q[u], %q[q]\n\t"
        "vmladava.s16 r8, %q[v], %q[p]\n\t"
        "vmladava.s16 r10, %q[v], %q[q]\n\t"
        "le lr, 1b\n\t"
        "strd r4, r6, [%[acc]]\n\t"
        "strd r8, r10, [%[acc], #8]\n\t"
        : [b] "+r"(b), [x] "+r"(x), [y] "+r"(y), [u] "=&w"(u), [v] "=&w"(v), [p] "=&w"(p), [q] "=&w"(q)
        : [n] "r"(passes), [acc] "r"(acc), [o0] "w"(o0), [o1] "w"(o1), [o2] "w"(o2), [o3] "w"(o3)
        : "r4", "r6", "r8", "r10", "lr", "memory");
  }
  a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  if (n & 8) {
    const int16x8_t u = vldrbq_gather_offset_s16(b, o0), v = vldrbq_gather_offset_s16(b, o1);
    const int16x8_t p = vldrhq_s16(x), q = vldrhq_s16(y);
    a0 = vmladavaq_s16(a0, u, p);
    a1 = vmladavaq_s16(a1, u, q);
    a2 = vmladavaq_s16(a2, v, p);
    a3 = vmladavaq_s16(a3, v, q);
    b += 16;
    x += 8;
    y += 8;
  }
  if (n & 4) { /* the last four inputs: one word of each channel */
    const mve_pred16_t h = vctp16q(4);
    const int16x8_t u = vldrbq_z_s16(b, h), v = vldrbq_z_s16(b + 4, h);
    const int16x8_t p = vldrhq_z_s16(x, h), q = vldrhq_z_s16(y, h);
    a0 = vmladavaq_s16(a0, u, p);
    a1 = vmladavaq_s16(a1, u, q);
    a2 = vmladavaq_s16(a2, v, p);
    a3 = vmladavaq_s16(a3, v, q);
    b += 8;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return MVE_WORDS(b);
}

/* One channel (consecutive words w), two pixels (x, x + sb): acc[0], acc[1]. */
VAE_EDGE_INLINE const uint32_t *mac_1x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
  int32_t a0 = acc[0], a1 = acc[1];
  const int8_t *b = MVE_BYTES(w);
  int i;
  for (i = n >> 3; i > 0; --i) {
    const int16x8_t u = vldrbq_s16(b);
    a0 = vmladavaq_s16(a0, u, vldrhq_s16(x));
    a1 = vmladavaq_s16(a1, u, vldrhq_s16(x + sb));
    b += 8;
    x += 8;
  }
  if (n & 4) {
    const mve_pred16_t h = vctp16q(4);
    const int16x8_t u = vldrbq_z_s16(b, h);
    a0 = vmladavaq_s16(a0, u, vldrhq_z_s16(x, h));
    a1 = vmladavaq_s16(a1, u, vldrhq_z_s16(x + sb, h));
    b += 4;
  }
  acc[0] = a0;
  acc[1] = a1;
  return MVE_WORDS(b);
}

/* Two channels (interleaved words w), one pixel x: acc[0] and acc[2]. */
VAE_EDGE_INLINE const uint32_t *mac_2x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0], a2 = acc[2];
  const int8_t *b = MVE_BYTES(w);
  const uint16x8_t off = mve_pair_offsets();
  int i;
  for (i = n >> 3; i > 0; --i) {
    const int16x8_t p = vldrhq_s16(x);
    a0 = vmladavaq_s16(a0, vldrbq_gather_offset_s16(b, off), p);
    a2 = vmladavaq_s16(a2, vldrbq_gather_offset_s16(b + 4, off), p);
    b += 16;
    x += 8;
  }
  if (n & 4) {
    const mve_pred16_t h = vctp16q(4);
    const int16x8_t p = vldrhq_z_s16(x, h);
    a0 = vmladavaq_s16(a0, vldrbq_z_s16(b, h), p);
    a2 = vmladavaq_s16(a2, vldrbq_z_s16(b + 4, h), p);
    b += 8;
  }
  acc[0] = a0;
  acc[2] = a2;
  return MVE_WORDS(b);
}

/* One channel, one pixel: acc[0]. */
VAE_EDGE_INLINE const uint32_t *mac_1x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  int32_t a0 = acc[0];
  const int8_t *b = MVE_BYTES(w);
  int i;
  for (i = n >> 3; i > 0; --i) {
    a0 = vmladavaq_s16(a0, vldrbq_s16(b), vldrhq_s16(x));
    b += 8;
    x += 8;
  }
  if (n & 4) {
    const mve_pred16_t h = vctp16q(4);
    a0 = vmladavaq_s16(a0, vldrbq_z_s16(b, h), vldrhq_z_s16(x, h));
    b += 4;
  }
  acc[0] = a0;
  return MVE_WORDS(b);
}
/* vae-edge: copy end */
#endif
