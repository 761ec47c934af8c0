/* conv_row_simd, the row kernel of the 128-bit SIMD builds (SSE2, WebAssembly SIMD; WebAssembly also
 * requantizes four outputs at once). On its own: gcc -msse2 -std=c99 -Wall -Wextra -Werror -fsyntax-only
 * -include simd_rows.h -x c /dev/null, or the same with clang --target=wasm32 -msimd128 -ffreestanding
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_SIMD_ROWS_H_
#define VAE_EDGE_KERNELS_SIMD_ROWS_H_
#if defined(__SSE2__)
#include <string.h>
#endif

#include "simd.h"
#include "conv_row.h"
/* vae-edge: copy begin */
#if defined(__wasm_simd128__)
#define VAE_EDGE_REQUANTIZE4 1
#define V_LOAD32_SPLAT(p) wasm_v128_load32_splat(p)
#define V_STORE(p, v) wasm_v128_store(p, v)
/* clang unrolls a loop of known trip count fully and hoists its loads; V8 then spills the accumulators. */
#define VAE_EDGE_NO_UNROLL _Pragma("clang loop unroll(disable)")

/* requantize() of four lanes that share one right shift (a shift <= 0): SaturatingRoundingDoublingHighMul's
 * 64-bit products (a multiplier in (0, 2^31) cannot saturate) plus 2^30, doubled so that each high half is
 * the product shifted right by 31; then RoundingDivideByPOT, the zero point, the clamp and the next layer's
 * offset. The same integers as requantize(), lane by lane. */
static inline v128 requantize4(v128 acc, v128 mult, int right, int32_t zp, int32_t lo, int32_t hi, int32_t nz) {
  const v128 half = wasm_i64x2_splat((int64_t)1 << 30);
  v128 pl = wasm_i64x2_add(wasm_i64x2_extmul_low_i32x4(acc, mult), half);
  v128 ph = wasm_i64x2_add(wasm_i64x2_extmul_high_i32x4(acc, mult), half);
  v128 x;
  pl = wasm_i64x2_add(pl, pl);
  ph = wasm_i64x2_add(ph, ph);
  x = wasm_i32x4_shuffle(pl, ph, 1, 3, 5, 7);
  if (right > 0) {
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const v128 rem = wasm_v128_and(x, wasm_i32x4_splat(mask));
    const v128 thr = wasm_i32x4_sub(wasm_i32x4_splat(mask >> 1), wasm_i32x4_shr(x, 31)); /* +1 below zero */
    x = wasm_i32x4_sub(wasm_i32x4_shr(x, right), wasm_i32x4_gt(rem, thr));               /* gt is -1 */
  }
  x = wasm_i32x4_min(wasm_i32x4_max(wasm_i32x4_add(x, wasm_i32x4_splat(zp)), wasm_i32x4_splat(lo)),
                     wasm_i32x4_splat(hi));
  return wasm_i32x4_add(x, wasm_i32x4_splat(nz));
}
#else
#define VAE_EDGE_REQUANTIZE4 0
static inline v128 load32_splat(const int16_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return _mm_set1_epi32(v);
}
#define V_LOAD32_SPLAT(p) load32_splat(p)
#define V_STORE(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)
#if defined(__clang__)
#define VAE_EDGE_NO_UNROLL _Pragma("clang loop unroll(disable)")
#else
#define VAE_EDGE_NO_UNROLL
#endif
#endif

/* Four lanes of int32 sums (bias included) -> int16 (value - next zero point) at out[0..3]. */
VAE_EDGE_INLINE void store4(int16_t *out, v128 sums, const int32_t *mult, const int8_t *shift, int right,
                            int32_t zp, int32_t lo, int32_t hi, int32_t nz) {
  int32_t s[4];
  int j;
#if VAE_EDGE_REQUANTIZE4
  if (right >= 0) {
    const v128 v = requantize4(sums, V_LOAD(mult), right, zp, lo, hi, nz);
    wasm_v128_store64_lane(out, wasm_i16x8_narrow_i32x4(v, v), 0);
    return;
  }
#endif
  (void)right;
  V_STORE(s, sums);
  for (j = 0; j < 4; ++j) out[j] = (int16_t)(requantize(s[j], mult[j], shift[j], zp, lo, hi) + nz);
}

#define SIMD_TAPS_MAX 64
/* conv_row for 128-bit SIMD. Sixteen output channels x two pixels at a time in eight i32x4 accumulators of
 * four channels each, over all taps: per pair of inputs, the pixel's two int16 activations are broadcast to
 * every lane and multiplied (PMADDWD / i32x4.dot_i16x8_s) with the sixteen channels' weights of those two
 * inputs, so the sums need no horizontal reduction. Weights int16, per phase: per block of 16 channels
 * [tap][input pair][channel][2], then each channel left over [tap][input] (done one at a time, as are the
 * int8 logits). right: the layer's one right shift, or -1 when its shifts differ (then store4 reads each). */
VAE_EDGE_INLINE void conv_row_simd(const conv_layer_t *L, const int16_t *w16, const int32_t *w16_start, int r,
                                   int16_t *out16, int8_t *out8, int right) {
  const int py = r % L->P, Y = r / L->P;
  const int C = L->in_c, OC = L->out_c, blocks = out16 ? OC / 16 : 0;
  const int sb = L->Q * C;
  const int32_t nz = L->next_neg_zp, zp = L->out_zp, lo = L->lo, hi = L->hi;
  int px;
  for (px = 0; px < L->P; ++px) {
    const int p = py * L->P + px;
    const int t0 = L->tap_start[p], nt = L->tap_start[p + 1] - t0;
    const int32_t *bias = L->bias + p * L->param_stride, *mult = L->mult + p * L->param_stride;
    const int8_t *shift = L->shift + p * L->param_stride;
    const int nx = (L->out_w - px + L->P - 1) / L->P;
    int X;
    for (X = 0; X < nx; X += 2) {
      const int two = X + 1 < nx;
      const size_t oa = (size_t)(L->P * X + px) * (size_t)OC, ob = oa + (size_t)L->P * (size_t)OC;
      const int16_t *xs[SIMD_TAPS_MAX];
      int which[SIMD_TAPS_MAX]; /* bit 0: pixel a reads this tap, bit 1: pixel b; xs[t] is a's input, else b's */
      int t, blk, c;
      for (t = 0; t < nt; ++t) {
        const int iy = L->Q * Y + L->dy[t0 + t], ia = L->Q * X + L->dx[t0 + t], ib = ia + L->Q;
        const int row_ok = iy >= 0 && iy < L->in_h;
        const int a_ok = row_ok && ia >= 0 && ia < L->in_w, b_ok = row_ok && two && ib >= 0 && ib < L->in_w;
        which[t] = a_ok | (b_ok << 1);
        xs[t] = which[t] ? L->in + ((size_t)(iy % L->in_rows) * (size_t)L->in_w + (size_t)(a_ok ? ia : ib)) * (size_t)C
                         : L->in;
      }
      for (blk = 0; blk < blocks; ++blk) {
        const int16_t *w = w16 + w16_start[p] + (size_t)blk * (size_t)nt * (size_t)C * 16;
        v128 a0 = V_ZERO(), a1 = V_ZERO(), a2 = V_ZERO(), a3 = V_ZERO();
        v128 b0 = V_ZERO(), b1 = V_ZERO(), b2 = V_ZERO(), b3 = V_ZERO();
        c = 16 * blk;
        for (t = 0; t < nt; ++t, w += 16 * C) {
          const int16_t *x = xs[t], *wk = w;
          int k;
          if (which[t] == 3) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 2, wk += 32) {
              const v128 xa = V_LOAD32_SPLAT(x + k), xb = V_LOAD32_SPLAT(x + sb + k);
              v128 wv = V_LOAD(wk);
              a0 = V_ADD32(a0, V_MADD16(wv, xa));
              b0 = V_ADD32(b0, V_MADD16(wv, xb));
              wv = V_LOAD(wk + 8);
              a1 = V_ADD32(a1, V_MADD16(wv, xa));
              b1 = V_ADD32(b1, V_MADD16(wv, xb));
              wv = V_LOAD(wk + 16);
              a2 = V_ADD32(a2, V_MADD16(wv, xa));
              b2 = V_ADD32(b2, V_MADD16(wv, xb));
              wv = V_LOAD(wk + 24);
              a3 = V_ADD32(a3, V_MADD16(wv, xa));
              b3 = V_ADD32(b3, V_MADD16(wv, xb));
            }
          } else if (which[t] == 1) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 2, wk += 32) {
              const v128 xa = V_LOAD32_SPLAT(x + k);
              a0 = V_ADD32(a0, V_MADD16(V_LOAD(wk), xa));
              a1 = V_ADD32(a1, V_MADD16(V_LOAD(wk + 8), xa));
              a2 = V_ADD32(a2, V_MADD16(V_LOAD(wk + 16), xa));
              a3 = V_ADD32(a3, V_MADD16(V_LOAD(wk + 24), xa));
            }
          } else if (which[t] == 2) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 2, wk += 32) {
              const v128 xb = V_LOAD32_SPLAT(x + k);
              b0 = V_ADD32(b0, V_MADD16(V_LOAD(wk), xb));
              b1 = V_ADD32(b1, V_MADD16(V_LOAD(wk + 8), xb));
              b2 = V_ADD32(b2, V_MADD16(V_LOAD(wk + 16), xb));
              b3 = V_ADD32(b3, V_MADD16(V_LOAD(wk + 24), xb));
            }
          }
        }
        store4(out16 + oa + c, V_ADD32(a0, V_LOAD(bias + c)), mult + c, shift + c, right, zp, lo, hi, nz);
        store4(out16 + oa + c + 4, V_ADD32(a1, V_LOAD(bias + c + 4)), mult + c + 4, shift + c + 4, right, zp, lo, hi, nz);
        store4(out16 + oa + c + 8, V_ADD32(a2, V_LOAD(bias + c + 8)), mult + c + 8, shift + c + 8, right, zp, lo, hi, nz);
        store4(out16 + oa + c + 12, V_ADD32(a3, V_LOAD(bias + c + 12)), mult + c + 12, shift + c + 12, right, zp, lo, hi, nz);
        if (two) {
          store4(out16 + ob + c, V_ADD32(b0, V_LOAD(bias + c)), mult + c, shift + c, right, zp, lo, hi, nz);
          store4(out16 + ob + c + 4, V_ADD32(b1, V_LOAD(bias + c + 4)), mult + c + 4, shift + c + 4, right, zp, lo, hi, nz);
          store4(out16 + ob + c + 8, V_ADD32(b2, V_LOAD(bias + c + 8)), mult + c + 8, shift + c + 8, right, zp, lo, hi, nz);
          store4(out16 + ob + c + 12, V_ADD32(b3, V_LOAD(bias + c + 12)), mult + c + 12, shift + c + 12, right, zp, lo, hi, nz);
        }
      }
      for (c = 16 * blocks; c < OC; ++c) { /* channels left over (all of them for int8 logits): one at a time */
        const int16_t *w = w16 + w16_start[p] + (size_t)c * (size_t)nt * (size_t)C;
        v128 a0 = V_ZERO(), b0 = V_ZERO();
        int32_t va, vb;
        for (t = 0; t < nt; ++t, w += C) {
          const int16_t *x = xs[t];
          int k;
          if (which[t] == 3) {
            for (k = 0; k < C; k += 8) {
              const v128 wv = V_LOAD(w + k);
              a0 = V_ADD32(a0, V_MADD16(wv, V_LOAD(x + k)));
              b0 = V_ADD32(b0, V_MADD16(wv, V_LOAD(x + sb + k)));
            }
          } else if (which[t] == 1) {
            for (k = 0; k < C; k += 8) a0 = V_ADD32(a0, V_MADD16(V_LOAD(w + k), V_LOAD(x + k)));
          } else if (which[t] == 2) {
            for (k = 0; k < C; k += 8) b0 = V_ADD32(b0, V_MADD16(V_LOAD(w + k), V_LOAD(x + k)));
          }
        }
        va = requantize(lanes01(a0) + lanes23(a0) + bias[c], mult[c], shift[c], zp, lo, hi);
        vb = requantize(lanes01(b0) + lanes23(b0) + bias[c], mult[c], shift[c], zp, lo, hi);
        if (out16) {
          out16[oa + c] = (int16_t)(va + nz);
          if (two) out16[ob + c] = (int16_t)(vb + nz);
        } else {
          out8[oa + c] = (int8_t)va;
          if (two) out8[ob + c] = (int8_t)vb;
        }
      }
    }
  }
}
/* vae-edge: copy end */
#endif
