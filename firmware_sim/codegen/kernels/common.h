/* Shared by every instruction set: the inline and alignment macros, and TFLite's integer arithmetic
 * (requantize). On its own: gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only -include common.h -x c /dev/null
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_COMMON_H_
#define VAE_EDGE_KERNELS_COMMON_H_
#include <stdint.h>
/* vae-edge: copy begin */
/* Each layer's row function is the generic one below inlined with that layer's constants (strides, channel
 * counts), which is what lets the compiler keep the multiply-accumulate loops in registers. */
#if defined(__GNUC__)
#define VAE_EDGE_INLINE static inline __attribute__((always_inline))
#define VAE_EDGE_ALIGN4 __attribute__((aligned(4)))
#define VAE_EDGE_MAYBE_UNUSED __attribute__((unused)) /* a decoder without standalone activations */
#else
#define VAE_EDGE_INLINE static inline
#define VAE_EDGE_ALIGN4
#define VAE_EDGE_MAYBE_UNUSED
#endif
/* ---- integer helpers: TFLite's arithmetic (the default build, double rounding) ---- */
static inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier for a multiplier in (0, 2^31): SaturatingRoundingDoublingHighMul is then
 * (a * m + 2^30) >> 31 exactly (its round-half-away-from-zero division, rewritten as one floor shift; the
 * saturating case needs m == INT32_MIN, which the generator never emits), then RoundingDivideByPOT. */
static inline int32_t multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  const int32_t a = (int32_t)((uint32_t)x << left);
  const int32_t high = (int32_t)(((int64_t)a * (int64_t)multiplier + (INT64_C(1) << 30)) >> 31);
  return rounding_divide_by_pot(high, right);
}

static inline int32_t requantize(int32_t acc, int32_t multiplier, int shift, int32_t zero_point, int32_t lo,
                                 int32_t hi) {
  int32_t v = multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point;
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

/* A standalone activation (TANH, LOGISTIC, LEAKY_RELU, RELU, RELU6) as the table of its 256 outputs, applied in
 * place to a row its layer has written: int16 rows between layers hold the requantized value q (the layer then
 * adds no zero point) and become table[q + 128] = activation(q) - the next layer's input zero point; the int8
 * logits of the last layer become table[q + 128] = activation(q). */
VAE_EDGE_MAYBE_UNUSED static inline void table_row16(int16_t *row, int n, const int16_t *table) {
  int i;
  for (i = 0; i < n; ++i) row[i] = table[row[i] + 128];
}

VAE_EDGE_MAYBE_UNUSED static inline void table_row8(int8_t *row, int n, const int8_t *table) {
  int i;
  for (i = 0; i < n; ++i) row[i] = table[row[i] + 128];
}

/* Weights are packed four int8 to a uint32_t word, byte j = bits 8j..8j+7 (by value, any endianness). For a
 * pair of output channels the words alternate: channel c's word g, then channel c+1's word g; an odd last
 * channel's words follow alone. Activations between layers are int16 (value - the next layer's input zero
 * point), so the multiply-accumulate loops read them in place: no im2col copy. */
/* vae-edge: copy end */
#endif
