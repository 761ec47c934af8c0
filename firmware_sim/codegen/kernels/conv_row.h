/* conv_layer_t (one layer's constants) and conv_row, the row kernel of every build; it calls the inner
 * loops of whichever instruction set was included before it (the portable ones when none was).
 * On its own: gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only -include conv_row.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_CONV_ROW_H_
#define VAE_EDGE_KERNELS_CONV_ROW_H_
#include <stddef.h>

#include "common.h"
#ifndef ACT_INDEX
#include "portable.h"
#endif
/* vae-edge: copy begin */
/* One layer's constants: taps per phase, weights [phase][tap][channel pair][in-channel] of the real taps. */
typedef struct {
  int in_h, in_w, in_c, in_rows;    /* input image and the rows its ring keeps */
  const int16_t *in;                /* ring of in_rows rows of in_w x in_c (row r at r % in_rows) */
  int out_w, out_c, P, Q;
  int32_t out_zp, lo, hi;
  int32_t next_neg_zp;              /* the next layer's -input zero point (int16 output), unused for logits */
  const int8_t *tap_start;          /* P*P + 1 offsets into dy/dx */
  const int8_t *dy, *dx;
  const int32_t *w_start;           /* P*P offsets (in words) into w */
  const uint32_t *w;
  const int32_t *bias, *mult;       /* [phase][channel], or [channel] when param_stride is 0 */
  const int8_t *shift;
  int param_stride;
} conv_layer_t;

/* Output row r of a phase convolution: int16 (value - next zero point) into out16, or int8 logits into out8.
 * Two output pixels at a time, tap by tap: their input vectors are read in place from the ring (adjacent
 * there); a tap outside the image is skipped for the pixel it misses, as TFLite skips it. acc[] holds the
 * int32 sums of the two pixels for every output channel. */
VAE_EDGE_INLINE void conv_row(const conv_layer_t *L, int r, int16_t *out16, int8_t *out8, int32_t *acc) {
  const int py = r % L->P, Y = r / L->P;
  const int sb = L->Q * L->in_c;
  const int words_per_tap = L->out_c * L->in_c / 4;
  int px;
  for (px = 0; px < L->P; ++px) {
    const int p = py * L->P + px;
    const int t0 = L->tap_start[p], t1 = L->tap_start[p + 1];
    const int32_t *bias = L->bias + p * L->param_stride, *mult = L->mult + p * L->param_stride;
    const int8_t *shift = L->shift + p * L->param_stride;
    const int nx = (L->out_w - px + L->P - 1) / L->P;
    int X;
    for (X = 0; X < nx; X += 2) {
      const int two = X + 1 < nx;
      const size_t oa = (size_t)(L->P * X + px) * (size_t)L->out_c, ob = oa + (size_t)L->P * (size_t)L->out_c;
      const uint32_t *w = L->w + L->w_start[p];
      int c, t;
      for (c = 0; c < L->out_c; ++c) acc[2 * c] = acc[2 * c + 1] = bias[c];
      for (t = t0; t < t1; ++t) {
        const int iy = L->Q * Y + L->dy[t], ia = L->Q * X + L->dx[t], ib = ia + L->Q;
        const int16_t *row, *x;
        int a_ok, b_ok;
        if (iy < 0 || iy >= L->in_h) {
          w += words_per_tap;
          continue;
        }
        row = L->in + (size_t)(iy % L->in_rows) * (size_t)L->in_w * (size_t)L->in_c;
        a_ok = ia >= 0 && ia < L->in_w;
        b_ok = two && ib >= 0 && ib < L->in_w;
        if (a_ok && b_ok) { /* both pixels: the pair is adjacent in the row */
          x = row + (size_t)ia * (size_t)L->in_c;
          for (c = 0; c + 1 < L->out_c; c += 2) w = mac_2x2(w, x, sb, L->in_c, acc + 2 * c);
          if (c < L->out_c) w = mac_1x2(w, x, sb, L->in_c, acc + 2 * c);
        } else if (a_ok || b_ok) { /* one pixel (image edge, or a lone last pixel) */
          const int one = a_ok ? 0 : 1;
          x = row + (size_t)(a_ok ? ia : ib) * (size_t)L->in_c;
          for (c = 0; c + 1 < L->out_c; c += 2) w = mac_2x1(w, x, L->in_c, acc + 2 * c + one);
          if (c < L->out_c) w = mac_1x1(w, x, L->in_c, acc + 2 * c + one);
        } else {
          w += words_per_tap;
        }
      }
      if (out16 && L->out_c % 4 == 0) { /* four channels at a time: their places ACT_INDEX(0..3) are constants */
        const int32_t nz = L->next_neg_zp, zp = L->out_zp, lo = L->lo, hi = L->hi;
        for (c = 0; c < L->out_c; c += 4) {
          int16_t *pa = out16 + oa + c, *pb = out16 + ob + c;
          const int32_t *s = acc + 2 * c;
          pa[ACT_INDEX(0)] = (int16_t)(requantize(s[0], mult[c], shift[c], zp, lo, hi) + nz);
          pa[ACT_INDEX(1)] = (int16_t)(requantize(s[2], mult[c + 1], shift[c + 1], zp, lo, hi) + nz);
          pa[ACT_INDEX(2)] = (int16_t)(requantize(s[4], mult[c + 2], shift[c + 2], zp, lo, hi) + nz);
          pa[ACT_INDEX(3)] = (int16_t)(requantize(s[6], mult[c + 3], shift[c + 3], zp, lo, hi) + nz);
          if (two) {
            pb[ACT_INDEX(0)] = (int16_t)(requantize(s[1], mult[c], shift[c], zp, lo, hi) + nz);
            pb[ACT_INDEX(1)] = (int16_t)(requantize(s[3], mult[c + 1], shift[c + 1], zp, lo, hi) + nz);
            pb[ACT_INDEX(2)] = (int16_t)(requantize(s[5], mult[c + 2], shift[c + 2], zp, lo, hi) + nz);
            pb[ACT_INDEX(3)] = (int16_t)(requantize(s[7], mult[c + 3], shift[c + 3], zp, lo, hi) + nz);
          }
        }
      } else {
        for (c = 0; c < L->out_c; ++c) {
          const int32_t va = requantize(acc[2 * c], mult[c], shift[c], L->out_zp, L->lo, L->hi);
          const int32_t vb = requantize(acc[2 * c + 1], mult[c], shift[c], L->out_zp, L->lo, L->hi);
          if (out16) {
            out16[oa + ACT_INDEX(c)] = (int16_t)(va + L->next_neg_zp);
            if (two) out16[ob + ACT_INDEX(c)] = (int16_t)(vb + L->next_neg_zp);
          } else {
            out8[oa + c] = (int8_t)va;
            if (two) out8[ob + c] = (int8_t)vb;
          }
        }
      }
    }
  }
}
/* vae-edge: copy end */
#endif
