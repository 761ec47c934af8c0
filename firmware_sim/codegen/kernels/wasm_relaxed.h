/* conv_row_relaxed, the row kernel of the WebAssembly relaxed SIMD build (-DVAE_EDGE_RELAXED_DOT, where the
 * generator found every layer suited: relaxed_eligible). On its own: clang --target=wasm32 -msimd128
 * -ffreestanding -std=c99 -Wall -Wextra -Werror -fsyntax-only -include wasm_relaxed.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_WASM_RELAXED_H_
#define VAE_EDGE_KERNELS_WASM_RELAXED_H_
#include "simd_rows.h"
#include "dense_row.h"
/* vae-edge: copy begin */
#define VAE_EDGE_RELAXED 1 /* conv_row_relaxed below */
#define RELAXED_QUADS_MAX 512
/* i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, acc): per i32 lane, acc plus the four products of a's signed bytes
 * and b's bytes. Relaxed SIMD leaves b's top bit to the engine (read signed or unsigned, pairs of products
 * saturated or not), so its value is only fixed when every byte of b is in [0, 127]: the only b passed here.
 * clang 14 has no builtin for the instruction, so this function computes it exactly in SIMD128 and
 * tools/web/wasm.py replaces each call of it with the instruction (0xfd 0x113); unpatched, the module gives
 * the same integers, only slower. const: it reads no memory, so clang keeps values in locals across it. */
v128 vae_edge_relaxed_dot(v128 a, v128 b, v128 acc);
__attribute__((noinline, const)) v128 vae_edge_relaxed_dot(v128 a, v128 b, v128 acc) {
  const v128 ae = wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8), ao = wasm_i16x8_shr(a, 8);
  const v128 be = wasm_i16x8_shr(wasm_i16x8_shl(b, 8), 8), bo = wasm_i16x8_shr(b, 8);
  return wasm_i32x4_add(acc, wasm_i32x4_add(wasm_i32x4_dot_i16x8(ae, be), wasm_i32x4_dot_i16x8(ao, bo)));
}
#define V_DOT8(a, b, acc) vae_edge_relaxed_dot(a, b, acc)

/* The four lanes' sum plus b, modulo 2^32 (partial sums may wrap; the whole sum fits in int32). */
static inline int32_t lanes_sum(v128 v, int32_t b) {
  return (int32_t)((uint32_t)wasm_i32x4_extract_lane(v, 0) + (uint32_t)wasm_i32x4_extract_lane(v, 1) +
                   (uint32_t)wasm_i32x4_extract_lane(v, 2) + (uint32_t)wasm_i32x4_extract_lane(v, 3) + (uint32_t)b);
}

/* Activations between layers are u = value - the next layer's input zero point, in [0, 255] (relaxed_eligible),
 * kept as two byte planes of the ring: low = u & 127 (in place) and high = (u & 128) / 2, 64 or 0 (one plane
 * further: the ring's second half). Then sum_i w_i u_i = dot(w, low) + 2 dot(w, high): every b in [0, 127]. */
static inline void store_planes(int8_t *out, size_t plane, v128 u8) {
  V_STORE(out, wasm_v128_and(u8, wasm_i8x16_splat(127)));
  V_STORE(out + plane, wasm_v128_and(wasm_i8x16_lt(u8, V_ZERO()), wasm_i8x16_splat(64))); /* top bit set: 64 */
}

/* Sixteen channels' int32 sums (bias included) -> out[0..15]: int8 logits (plane 0), else the two planes. */
VAE_EDGE_INLINE void store16_u8(int8_t *out, size_t plane, v128 s0, v128 s1, v128 s2, v128 s3,
                                const int32_t *mult, const int8_t *shift, int right, int32_t zp, int32_t lo,
                                int32_t hi, int32_t nz) {
  int32_t s[16];
  uint8_t u[16];
  int j;
  if (right >= 0) { /* [lo, hi] (+ nz) lies in int8 (or [0, 255]): the saturating narrows change nothing */
    s0 = requantize4(s0, V_LOAD(mult), right, zp, lo, hi, nz);
    s1 = requantize4(s1, V_LOAD(mult + 4), right, zp, lo, hi, nz);
    s2 = requantize4(s2, V_LOAD(mult + 8), right, zp, lo, hi, nz);
    s3 = requantize4(s3, V_LOAD(mult + 12), right, zp, lo, hi, nz);
    s0 = wasm_i16x8_narrow_i32x4(s0, s1);
    s2 = wasm_i16x8_narrow_i32x4(s2, s3);
    if (plane) store_planes(out, plane, wasm_u8x16_narrow_i16x8(s0, s2));
    else V_STORE(out, wasm_i8x16_narrow_i16x8(s0, s2));
    return;
  }
  V_STORE(s, s0);
  V_STORE(s + 4, s1);
  V_STORE(s + 8, s2);
  V_STORE(s + 12, s3);
  for (j = 0; j < 16; ++j) u[j] = (uint8_t)(requantize(s[j], mult[j], shift[j], zp, lo, hi) + nz);
  if (plane) store_planes(out, plane, V_LOAD(u));
  else V_STORE(out, V_LOAD(u));
}

/* conv_row_relaxed for a layer of fewer than 16 output channels (the int8 logits): channel by channel, tap by
 * tap over the phase's whole row of output pixels, the tap's weights in registers and each pixel's four partial
 * sums in acc[] (summed and requantized at the end). A pixel's input with a high half adds its two dot products
 * with the high plane as conv_row_relaxed does. */
#define RELAXED_ROW_MAX 128
VAE_EDGE_INLINE void conv_row_relaxed_narrow(const conv_layer_t *L, const int8_t *w7, const int32_t *w7_start,
                                             int r, int8_t *out, size_t out_plane) {
  const int py = r % L->P, Y = r / L->P, Q = L->Q;
  const int C = L->in_c, OC = L->out_c;
  const size_t plane = (size_t)L->in_rows * (size_t)L->in_w * (size_t)C;
  const int8_t *in = (const int8_t *)(const void *)L->in;
  v128 acc[RELAXED_ROW_MAX];
  int px;
  for (px = 0; px < L->P; ++px) {
    const int p = py * L->P + px;
    const int t0 = L->tap_start[p], nt = L->tap_start[p + 1] - t0;
    const int32_t *bias = L->bias + p * L->param_stride, *mult = L->mult + p * L->param_stride;
    const int8_t *shift = L->shift + p * L->param_stride;
    const int nx = (L->out_w - px + L->P - 1) / L->P;
    int c, t, X, k;
    for (c = 0; c < OC; ++c) {
      const int8_t *w = w7 + w7_start[p] + (size_t)c * (size_t)nt * (size_t)C;
      for (X = 0; X < nx; ++X) acc[X] = V_ZERO();
      for (t = 0; t < nt; ++t, w += C) {
        const int iy = Q * Y + L->dy[t0 + t], dx = L->dx[t0 + t], last = L->in_w - 1 - dx;
        const int x0 = dx < 0 ? (Q - 1 - dx) / Q : 0; /* the pixels X with 0 <= Q X + dx < in_w */
        const int x1 = last < 0 ? 0 : (last / Q + 1 < nx ? last / Q + 1 : nx);
        const int8_t *row;
        if (iy < 0 || iy >= L->in_h) continue;
        row = in + ((size_t)(iy % L->in_rows) * (size_t)L->in_w + (size_t)dx) * (size_t)C;
        for (X = x0; X < x1; ++X) {
          const int8_t *x = row + (size_t)(Q * X) * (size_t)C;
          v128 s = acc[X], any = V_ZERO();
          for (k = 0; k < C; k += 16) {
            s = V_DOT8(V_LOAD(w + k), V_LOAD(x + k), s);
            any = wasm_v128_or(any, V_LOAD(x + plane + k));
          }
          if (wasm_v128_any_true(any)) {
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k), h = V_LOAD(x + plane + k);
              s = V_DOT8(wv, h, V_DOT8(wv, h, s));
            }
          }
          acc[X] = s;
        }
      }
      for (X = 0; X < nx; ++X) {
        const int32_t v = requantize(lanes_sum(acc[X], bias[c]), mult[c], shift[c], L->out_zp, L->lo, L->hi);
        const size_t o = (size_t)(L->P * X + px) * (size_t)OC + (size_t)c;
        if (out_plane) {
          const int32_t u = v + L->next_neg_zp;
          out[o] = (int8_t)(u & 127);
          out[o + out_plane] = (int8_t)((u & 128) >> 1);
        } else {
          out[o] = (int8_t)v;
        }
      }
    }
  }
}

/* conv_row for WebAssembly relaxed SIMD: one int8 dot product per four multiply-accumulates, exact.
 * a = the weights (signed bytes), b = the inputs' low plane, four inputs broadcast to the lanes of sixteen
 * channels (two pixels at a time, as conv_row_simd). The inputs of a pixel's tap with a high half (u >= 128,
 * rare after a ReLU) are listed by groups of four while the taps are set up, and added after: two dot
 * products with their high plane (64 each) per group. Weights per phase: per block of 16 output channels
 * [tap][input quad][channel][4], then each channel left over (all of them for the int8 logits) [tap][input]. */
VAE_EDGE_INLINE void conv_row_relaxed(const conv_layer_t *L, const int8_t *w7, const int32_t *w7_start, int r,
                                      int8_t *out, size_t out_plane, int right) {
  const int py = r % L->P, Y = r / L->P;
  const int C = L->in_c, OC = L->out_c, blocks = OC / 16;
  const int sb = L->Q * C;
  const size_t plane = (size_t)L->in_rows * (size_t)L->in_w * (size_t)C; /* low plane -> high plane */
  const int8_t *in = (const int8_t *)(const void *)L->in;
  const int32_t zp = L->out_zp, lo = L->lo, hi = L->hi, nz = L->next_neg_zp;
  int px;
  if (OC < 16 && L->out_w <= RELAXED_ROW_MAX) {
    conv_row_relaxed_narrow(L, w7, w7_start, r, out, out_plane);
    return;
  }
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
      const int8_t *xs[SIMD_TAPS_MAX];
      int which[SIMD_TAPS_MAX]; /* bit 0: pixel a reads this tap, bit 1: pixel b; xs[t] is a's input, else b's */
      int high[SIMD_TAPS_MAX];  /* bit 0: a's input at this tap has a high half, bit 1: b's */
      int32_t qa[RELAXED_QUADS_MAX], qb[RELAXED_QUADS_MAX]; /* groups with a high half: t * C + input */
      /* Bit j: the tap's quad j (inputs 4j..4j+3) has a nonzero low plane in a pixel the tap reads. After a ReLU
       * most inputs are u = 0 (77-88% of the values, about half of the quads, in the built-in decoders); a zero
       * quad adds nothing to any sum, so the dot products below visit only the set bits (C <= 128). */
      uint32_t quads[SIMD_TAPS_MAX];
      int na = 0, nb = 0, t, blk, c, k;
      for (t = 0; t < nt; ++t) {
        const int iy = L->Q * Y + L->dy[t0 + t], ia = L->Q * X + L->dx[t0 + t], ib = ia + L->Q;
        const int row_ok = iy >= 0 && iy < L->in_h;
        const int a_ok = row_ok && ia >= 0 && ia < L->in_w, b_ok = row_ok && two && ib >= 0 && ib < L->in_w;
        const int8_t *x;
        which[t] = a_ok | (b_ok << 1);
        x = which[t] ? in + ((size_t)(iy % L->in_rows) * (size_t)L->in_w + (size_t)(a_ok ? ia : ib)) * (size_t)C : in;
        xs[t] = x;
        high[t] = 0;
        quads[t] = 0;
        if (which[t] && C <= 128) {
          const int8_t *xa = a_ok ? x : NULL, *xb = b_ok ? (a_ok ? x + sb : x) : NULL;
          for (k = 0; k < C; k += 16) {
            const v128 v = wasm_v128_or(xa ? V_LOAD(xa + k) : V_ZERO(), xb ? V_LOAD(xb + k) : V_ZERO());
            quads[t] |= (uint32_t)wasm_i32x4_bitmask(wasm_i32x4_ne(v, V_ZERO())) << (k / 4);
          }
        }
        if (which[t]) { /* one test of the tap's high planes, then (rarely) the groups */
          const int8_t *ha = x + plane, *hb = (a_ok ? x + sb : x) + plane;
          v128 any = V_ZERO();
          if (a_ok)
            for (k = 0; k < C; k += 16) any = wasm_v128_or(any, V_LOAD(ha + k));
          if (b_ok)
            for (k = 0; k < C; k += 16) any = wasm_v128_or(any, V_LOAD(hb + k));
          if (!wasm_v128_any_true(any)) continue;
        }
        for (k = 0; k < C && which[t]; k += 16) {
          const int ma = a_ok ? wasm_i8x16_bitmask(wasm_i8x16_shl(V_LOAD(x + plane + k), 1)) : 0;
          const int mb = b_ok ? wasm_i8x16_bitmask(wasm_i8x16_shl(V_LOAD((a_ok ? x + sb : x) + plane + k), 1)) : 0;
          int j;
          if (!(ma | mb)) continue;
          high[t] |= (ma ? 1 : 0) | (mb ? 2 : 0);
          for (j = 0; j < 16; j += 4) {
            if ((ma >> j) & 15) qa[na++] = t * C + k + j;
            if ((mb >> j) & 15) qb[nb++] = t * C + k + j;
          }
        }
      }
      for (blk = 0; blk < blocks; ++blk) {
        const int8_t *w = w7 + w7_start[p] + (size_t)blk * (size_t)nt * (size_t)C * 16;
        v128 a0, a1, a2, a3, b0, b1, b2, b3;
        int e;
        c = 16 * blk;
        a0 = b0 = V_LOAD(bias + c);
        a1 = b1 = V_LOAD(bias + c + 4);
        a2 = b2 = V_LOAD(bias + c + 8);
        a3 = b3 = V_LOAD(bias + c + 12);
        for (t = 0; t < nt; ++t) {
          const int8_t *x = xs[t], *wk = w + (size_t)t * (size_t)C * 16;
          if (which[t] == 3 && C <= 128) {
            uint32_t m = quads[t];
            while (m) {
              const int q = __builtin_ctz(m);
              const v128 xa = V_LOAD32_SPLAT(x + 4 * q), xb = V_LOAD32_SPLAT(x + sb + 4 * q);
              const int8_t *wq = wk + 64 * q;
              v128 wv = V_LOAD(wq);
              m &= m - 1u;
              a0 = V_DOT8(wv, xa, a0);
              b0 = V_DOT8(wv, xb, b0);
              wv = V_LOAD(wq + 16);
              a1 = V_DOT8(wv, xa, a1);
              b1 = V_DOT8(wv, xb, b1);
              wv = V_LOAD(wq + 32);
              a2 = V_DOT8(wv, xa, a2);
              b2 = V_DOT8(wv, xb, b2);
              wv = V_LOAD(wq + 48);
              a3 = V_DOT8(wv, xa, a3);
              b3 = V_DOT8(wv, xb, b3);
            }
          } else if (which[t] == 3) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 4, wk += 64) {
              const v128 xa = V_LOAD32_SPLAT(x + k), xb = V_LOAD32_SPLAT(x + sb + k);
              v128 wv = V_LOAD(wk);
              a0 = V_DOT8(wv, xa, a0);
              b0 = V_DOT8(wv, xb, b0);
              wv = V_LOAD(wk + 16);
              a1 = V_DOT8(wv, xa, a1);
              b1 = V_DOT8(wv, xb, b1);
              wv = V_LOAD(wk + 32);
              a2 = V_DOT8(wv, xa, a2);
              b2 = V_DOT8(wv, xb, b2);
              wv = V_LOAD(wk + 48);
              a3 = V_DOT8(wv, xa, a3);
              b3 = V_DOT8(wv, xb, b3);
            }
          } else if (which[t] == 1) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 4, wk += 64) {
              const v128 xa = V_LOAD32_SPLAT(x + k);
              a0 = V_DOT8(V_LOAD(wk), xa, a0);
              a1 = V_DOT8(V_LOAD(wk + 16), xa, a1);
              a2 = V_DOT8(V_LOAD(wk + 32), xa, a2);
              a3 = V_DOT8(V_LOAD(wk + 48), xa, a3);
            }
          } else if (which[t] == 2) {
            VAE_EDGE_NO_UNROLL for (k = 0; k < C; k += 4, wk += 64) {
              const v128 xb = V_LOAD32_SPLAT(x + k);
              b0 = V_DOT8(V_LOAD(wk), xb, b0);
              b1 = V_DOT8(V_LOAD(wk + 16), xb, b1);
              b2 = V_DOT8(V_LOAD(wk + 32), xb, b2);
              b3 = V_DOT8(V_LOAD(wk + 48), xb, b3);
            }
          }
        }
        for (e = 0; e < na; ++e) { /* the high halves: 2 * dot(w, 64 or 0) = 128 w where u >= 128 */
          const int tq = qa[e] / C, iq = qa[e] - tq * C;
          const v128 h = V_LOAD32_SPLAT(xs[tq] + plane + iq);
          const int8_t *wk = w + (size_t)qa[e] * 16;
          v128 wv = V_LOAD(wk);
          a0 = V_DOT8(wv, h, V_DOT8(wv, h, a0));
          wv = V_LOAD(wk + 16);
          a1 = V_DOT8(wv, h, V_DOT8(wv, h, a1));
          wv = V_LOAD(wk + 32);
          a2 = V_DOT8(wv, h, V_DOT8(wv, h, a2));
          wv = V_LOAD(wk + 48);
          a3 = V_DOT8(wv, h, V_DOT8(wv, h, a3));
        }
        for (e = 0; e < nb; ++e) {
          const int tq = qb[e] / C, iq = qb[e] - tq * C;
          const v128 h = V_LOAD32_SPLAT((which[tq] == 3 ? xs[tq] + sb : xs[tq]) + plane + iq);
          const int8_t *wk = w + (size_t)qb[e] * 16;
          v128 wv = V_LOAD(wk);
          b0 = V_DOT8(wv, h, V_DOT8(wv, h, b0));
          wv = V_LOAD(wk + 16);
          b1 = V_DOT8(wv, h, V_DOT8(wv, h, b1));
          wv = V_LOAD(wk + 32);
          b2 = V_DOT8(wv, h, V_DOT8(wv, h, b2));
          wv = V_LOAD(wk + 48);
          b3 = V_DOT8(wv, h, V_DOT8(wv, h, b3));
        }
        store16_u8(out + oa + c, out_plane, a0, a1, a2, a3, mult + c, shift + c, right, zp, lo, hi, nz);
        if (two) store16_u8(out + ob + c, out_plane, b0, b1, b2, b3, mult + c, shift + c, right, zp, lo, hi, nz);
      }
      for (c = 16 * blocks; c < OC; ++c) { /* channels left over (all of them for int8 logits): one at a time */
        const int8_t *w = w7 + w7_start[p] + (size_t)c * (size_t)nt * (size_t)C;
        v128 a0 = V_ZERO(), b0 = V_ZERO();
        int32_t va, vb;
        for (t = 0; t < nt; ++t, w += C) {
          const int8_t *x = xs[t];
          if (which[t] == 3) {
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k);
              a0 = V_DOT8(wv, V_LOAD(x + k), a0);
              b0 = V_DOT8(wv, V_LOAD(x + sb + k), b0);
            }
          } else if (which[t] == 1) {
            for (k = 0; k < C; k += 16) a0 = V_DOT8(V_LOAD(w + k), V_LOAD(x + k), a0);
          } else if (which[t] == 2) {
            for (k = 0; k < C; k += 16) b0 = V_DOT8(V_LOAD(w + k), V_LOAD(x + k), b0);
          }
          if (high[t] & 1) {
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k), h = V_LOAD(x + plane + k);
              a0 = V_DOT8(wv, h, V_DOT8(wv, h, a0));
            }
          }
          if (high[t] & 2) {
            const int8_t *xb = which[t] == 3 ? x + sb : x;
            for (k = 0; k < C; k += 16) {
              const v128 wv = V_LOAD(w + k), h = V_LOAD(xb + plane + k);
              b0 = V_DOT8(wv, h, V_DOT8(wv, h, b0));
            }
          }
        }
        va = requantize(lanes_sum(a0, bias[c]), mult[c], shift[c], zp, lo, hi) + (out_plane ? nz : 0);
        vb = requantize(lanes_sum(b0, bias[c]), mult[c], shift[c], zp, lo, hi) + (out_plane ? nz : 0);
        if (out_plane) {
          out[oa + c] = (int8_t)(va & 127);
          out[oa + c + out_plane] = (int8_t)((va & 128) >> 1);
          if (two) {
            out[ob + c] = (int8_t)(vb & 127);
            out[ob + c + out_plane] = (int8_t)((vb & 128) >> 1);
          }
        } else {
          out[oa + c] = (int8_t)va;
          if (two) out[ob + c] = (int8_t)vb;
        }
      }
    }
  }
}
/* dense_row for this build: row r of the FULLY_CONNECTED output as u = value - next zero point in two byte
 * planes of the first ring (low plane at out8, high plane at out8 + plane), as conv_row_relaxed reads them. */
VAE_EDGE_INLINE void dense_row_relaxed(const dense_layer_t *d, const int8_t *in, int r, int8_t *out8,
                                       size_t plane) {
  int j;
  v128 xp[DENSE_PAIRS_MAX];
  const int pairs = dense_input_pairs(d, in, xp);
  if (pairs && d->shift <= 0 && d->row_values % 4 == 0) { /* a shared right shift: whole vectors of 4 */
    for (j = 0; j < d->row_values; j += 4) {
      v128 v = requantize4(dense_sum4(d, xp, pairs, r * d->row_values + j), wasm_i32x4_splat(d->multiplier),
                           -d->shift, d->out_zp, d->lo, d->hi, d->next_neg_zp);
      v = wasm_i16x8_narrow_i32x4(v, v);
      v = wasm_u8x16_narrow_i16x8(v, v);
      wasm_v128_store32_lane(out8 + j, wasm_v128_and(v, wasm_i8x16_splat(127)), 0);
      wasm_v128_store32_lane(out8 + j + plane, wasm_v128_and(wasm_i8x16_lt(v, V_ZERO()), wasm_i8x16_splat(64)), 0);
    }
    return;
  }
  for (j = 0; j < d->row_values; ++j) {
    const int32_t u = requantize(dense_sum(d, in, r * d->row_values + j), d->multiplier, d->shift, d->out_zp,
                                 d->lo, d->hi) + d->next_neg_zp;
    out8[j] = (int8_t)(u & 127);
    out8[j + plane] = (int8_t)((u & 128) >> 1);
  }
}
/* vae-edge: copy end */
#endif
