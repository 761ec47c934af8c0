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
 * weights [output][input], one multiplier and shift for the layer (per-tensor, as TFLite quantizes it). */
typedef struct {
  int in_size, row_values, channels;
  int32_t in_zp, multiplier;
  int shift;
  int32_t out_zp, lo, hi;
  int32_t next_neg_zp; /* the next layer's -input zero point: the ring holds value - zero point */
  const int8_t *weights;
  const VAE_EDGE_DENSE_BIAS_T *bias;
} dense_layer_t;

/* Output n's int32 sum: the bias plus the weights times (input - input zero point). */
VAE_EDGE_INLINE int32_t dense_sum(const dense_layer_t *d, const int8_t *in, int n) {
  const int8_t *w = d->weights + (size_t)n * d->in_size;
  int32_t sum = d->bias[n];
  int i;
  for (i = 0; i < d->in_size; ++i) sum += (int32_t)w[i] * ((int32_t)in[i] - d->in_zp);
  return sum;
}

/* Row r of the output image as int16 (value - next zero point), channels in ACT_INDEX order. */
VAE_EDGE_INLINE void dense_row(const dense_layer_t *d, const int8_t *in, int r, int16_t *out) {
  int j;
#if VAE_EDGE_REQUANTIZE4
  if (d->shift <= 0 && d->row_values % 4 == 0) { /* a shared right shift: whole vectors of 4 outputs */
    for (j = 0; j < d->row_values; j += 4) {
      int32_t sums[4];
      int q;
      v128 v;
      for (q = 0; q < 4; ++q) sums[q] = dense_sum(d, in, r * d->row_values + j + q);
      v = requantize4(V_LOAD(sums), wasm_i32x4_splat(d->multiplier), -d->shift, d->out_zp, d->lo, d->hi,
                      d->next_neg_zp);
      wasm_v128_store64_lane(out + j, wasm_i16x8_narrow_i32x4(v, v), 0);
    }
    return;
  }
#endif
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
