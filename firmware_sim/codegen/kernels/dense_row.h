/* dense_layer_t (the FULLY_CONNECTED layer's constants), dense_row, the row kernel of every build that writes
 * int16 rings, and quantize_input, TFLite's QUANTIZE of one float. The WebAssembly relaxed SIMD build writes
 * the first ring as two byte planes instead: dense_row_relaxed in wasm_relaxed.h.
 * On its own: gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only -include dense_row.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_DENSE_ROW_H_
#define VAE_EDGE_KERNELS_DENSE_ROW_H_
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#ifndef ACT_INDEX
#include "portable.h"
#endif
#ifndef VAE_EDGE_REQUANTIZE4
#define VAE_EDGE_REQUANTIZE4 0
#endif
/* vae-edge: copy begin */
/* The generated file defines VAE_EDGE_DENSE_BIAS_T, the narrowest integer type that holds its biases. */
#ifndef VAE_EDGE_DENSE_BIAS_T
#define VAE_EDGE_DENSE_BIAS_T int32_t
#endif
/* FULLY_CONNECTED of in_size int8 inputs, its outputs read as an image of rows of row_values (width x channels):
 * weights [output][input], one multiplier and shift for the layer (per-tensor, as TFLite quantizes it).
 * derived_shift > 0: a split latent (runtime/latent.py) whose remainders' weights are the grid points' weights
 * divided by 2^derived_shift, rounded half away from zero; weights then holds [output][in_size / 2], the
 * grid points' weights only (half the flash), and the others are derived as the sums run. */
typedef struct {
  int in_size, row_values, channels;
  int32_t in_zp, multiplier;
  int shift;
  int32_t out_zp, lo, hi;
  int32_t next_neg_zp; /* the next layer's -input zero point: the ring holds value - zero point */
  const int8_t *weights;
  const VAE_EDGE_DENSE_BIAS_T *bias;
  const int16_t *w16; /* the weights in dense_sum4's layout (WebAssembly SIMD builds), else NULL */
  int derived_shift;
} dense_layer_t;

/* w / 2^k rounded half away from zero (k >= 1): the weight of a split latent's remainder. Branch-free:
 * floor((w + half) / 2^k) for w >= 0, floor((w + half - 1) / 2^k) = ceil((w - half) / 2^k) for w < 0 (the
 * compilers this project targets shift signed values arithmetically, as the requantization already needs). */
static inline int32_t derived_weight(int32_t w, int k) {
  return (w + ((int32_t)1 << (k - 1)) - (int32_t)(w < 0)) >> k;
}

/* Output n's int32 sum: the bias plus the weights times (input - input zero point). */
VAE_EDGE_INLINE int32_t dense_sum(const dense_layer_t *d, const int8_t *in, int n) {
  int32_t sum = d->bias[n];
  int i;
  if (d->derived_shift > 0) {
    const int h = d->in_size / 2;
    const int8_t *w = d->weights + (size_t)n * (size_t)h;
    for (i = 0; i < h; ++i)
      sum += (int32_t)w[i] * ((int32_t)in[i] - d->in_zp) +
             derived_weight(w[i], d->derived_shift) * ((int32_t)in[h + i] - d->in_zp);
    return sum;
  }
  {
    const int8_t *w = d->weights + (size_t)n * d->in_size;
    for (i = 0; i < d->in_size; ++i) sum += (int32_t)w[i] * ((int32_t)in[i] - d->in_zp);
  }
  return sum;
}

#if VAE_EDGE_REQUANTIZE4
/* The inputs as pairs for dense_sum4: lane pair p of xp[p] holds (in[2p] - in_zp, in[2p+1] - in_zp) as int16,
 * four times (an odd last input pairs with 0). Returns the number of pairs, 0 if there are more than
 * DENSE_PAIRS_MAX (dense_sum then). */
#define DENSE_PAIRS_MAX 32
static inline int dense_input_pairs(const dense_layer_t *d, const int8_t *in, v128 xp[DENSE_PAIRS_MAX]) {
  const int pairs = (d->in_size + 1) / 2;
  int p;
  if (pairs > DENSE_PAIRS_MAX) return 0;
  for (p = 0; p < pairs; ++p) {
    const int32_t lo = (int32_t)in[2 * p] - d->in_zp;
    const int32_t hi = 2 * p + 1 < d->in_size ? (int32_t)in[2 * p + 1] - d->in_zp : 0;
    xp[p] = wasm_i32x4_splat((int32_t)(((uint32_t)hi << 16) | ((uint32_t)lo & 0xffffu)));
  }
  return pairs;
}

/* The int32 sums of outputs n..n+3 (n a multiple of 4): per pair of inputs one i32x4.dot_i16x8_s of the four
 * outputs' two weights (w16, layouts.dense_pairs) with the pair; the same integers as dense_sum. */
VAE_EDGE_INLINE v128 dense_sum4(const dense_layer_t *d, const v128 *xp, int pairs, int n) {
  const int16_t *w = d->w16 + (size_t)n * (size_t)pairs * 2;
  v128 acc = wasm_i32x4_make(d->bias[n], d->bias[n + 1], d->bias[n + 2], d->bias[n + 3]);
  int p;
  for (p = 0; p < pairs; ++p) acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(V_LOAD(w + 8 * p), xp[p]));
  return acc;
}
#endif

/* dense_sum with the inputs' zero point already taken off (x[i] = in[i] - in_zp), for small layers. */
#define DENSE_HOISTED_MAX 8
VAE_EDGE_INLINE int32_t dense_sum_hoisted(const dense_layer_t *d, const int32_t *x, int n) {
  int32_t sum = d->bias[n];
  int i;
  if (d->derived_shift > 0) {
    const int h = d->in_size / 2;
    const int8_t *w = d->weights + (size_t)n * (size_t)h;
    for (i = 0; i < h; ++i) sum += (int32_t)w[i] * x[i] + derived_weight(w[i], d->derived_shift) * x[h + i];
  } else {
    const int8_t *w = d->weights + (size_t)n * d->in_size;
    for (i = 0; i < d->in_size; ++i) sum += (int32_t)w[i] * x[i];
  }
  return sum;
}

/* Row r of the output image as int16 (value - next zero point), channels in ACT_INDEX order. */
VAE_EDGE_INLINE void dense_row(const dense_layer_t *d, const int8_t *in, int r, int16_t *out) {
  int j;
#if VAE_EDGE_REQUANTIZE4
  v128 xp[DENSE_PAIRS_MAX];
  const int pairs = dense_input_pairs(d, in, xp);
  if (pairs && d->shift <= 0 && d->row_values % 4 == 0) { /* a shared right shift: whole vectors of 4 */
    for (j = 0; j < d->row_values; j += 4) {
      const v128 v = requantize4(dense_sum4(d, xp, pairs, r * d->row_values + j), wasm_i32x4_splat(d->multiplier),
                                 -d->shift, d->out_zp, d->lo, d->hi, d->next_neg_zp);
      wasm_v128_store64_lane(out + j, wasm_i16x8_narrow_i32x4(v, v), 0);
    }
    return;
  }
#endif
  if (d->in_size <= DENSE_HOISTED_MAX) { /* the input offsets once per row: out's stores may alias in */
    int32_t x[DENSE_HOISTED_MAX];
    for (j = 0; j < d->in_size; ++j) x[j] = (int32_t)in[j] - d->in_zp;
    for (j = 0; j < d->row_values; ++j) {
      const int32_t sum = dense_sum_hoisted(d, x, r * d->row_values + j);
      out[j - j % d->channels + ACT_INDEX(j % d->channels)] =
          (int16_t)(requantize(sum, d->multiplier, d->shift, d->out_zp, d->lo, d->hi) + d->next_neg_zp);
    }
    return;
  }
  for (j = 0; j < d->row_values; ++j) {
    const int32_t sum = dense_sum(d, in, r * d->row_values + j);
    out[j - j % d->channels + ACT_INDEX(j % d->channels)] =
        (int16_t)(requantize(sum, d->multiplier, d->shift, d->out_zp, d->lo, d->hi) + d->next_neg_zp);
  }
}

/* TFLite's QUANTIZE of one float: round half away from zero of v / scale (float), plus the zero point,
 * clamped to int8; NaN quantizes as 0 (plus the zero point). */
static inline int8_t quantize_input(float v, float scale, int32_t zero_point) {
  const float x = v / scale;
  float r;
  int32_t q;
  if (!(x == x)) r = 0.0f;
  else if (x > 1000.0f) r = 1000.0f;
  else if (x < -1000.0f) r = -1000.0f;
  else {
    r = (float)(int32_t)x; /* truncation toward zero; the difference below is exact */
    if (x >= 0.0f && x - r >= 0.5f) r += 1.0f;
    else if (x < 0.0f && r - x >= 0.5f) r -= 1.0f;
  }
  q = (int32_t)r + zero_point;
  return (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
}
/* vae-edge: copy end */
#endif
