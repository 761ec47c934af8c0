/* 128-bit SIMD inner loops: x86 SSE2 (PMADDWD) and WebAssembly SIMD (i32x4.dot_i16x8_s) behind one set of
 * V_* macros. On its own: gcc -msse2 -std=c99 -Wall -Wextra -Werror -fsyntax-only -include simd.h -x c /dev/null,
 * or the same with clang --target=wasm32 -msimd128 -ffreestanding
 *
 * firmware_sim/codegen/emit.py copies the lines between the copy begin and copy end markers into every
 * generated <model>_decoder.c; the lines outside them (include guard, includes) only let this file compile
 * on its own.
 */
#ifndef VAE_EDGE_KERNELS_SIMD_H_
#define VAE_EDGE_KERNELS_SIMD_H_
#include "common.h"
/* vae-edge: copy begin */
#define VAE_EDGE_DSP 0
#define VAE_EDGE_SIMD128 1 /* conv_row_simd below */
/* 128-bit SIMD path, x86 hosts (SSE2 PMADDWD) and WebAssembly SIMD (i32x4.dot_i16x8_s, the same operation):
 * natural channel order like the portable path, 8 inputs a step. */
#define ACT_INDEX(c) (c)
#if defined(__SSE2__)
#include <emmintrin.h>
typedef __m128i v128;
#define V_ZERO() _mm_setzero_si128()
#define V_LOAD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define V_LOAD64(p) _mm_loadl_epi64((const __m128i *)(const void *)(p))
#define V_LOAD32(u) _mm_cvtsi32_si128((int)(u))
#define V_ADD32(a, b) _mm_add_epi32(a, b)
#define V_MADD16(a, b) _mm_madd_epi16(a, b)
#define V_DUP_LO64(v) _mm_unpacklo_epi64(v, v)
#define V_DUP_HI64(v) _mm_unpackhi_epi64(v, v)
static inline v128 widen_lo(v128 v) { return _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8); }
static inline v128 widen_hi(v128 v) { return _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8); }
static inline int32_t lanes01(v128 v) { return _mm_cvtsi128_si32(v) + _mm_cvtsi128_si32(_mm_srli_si128(v, 4)); }
static inline int32_t lanes23(v128 v) { return lanes01(_mm_srli_si128(v, 8)); }
#else
#include <wasm_simd128.h>
typedef v128_t v128;
#define V_ZERO() wasm_i32x4_splat(0)
#define V_LOAD(p) wasm_v128_load(p)
#define V_LOAD64(p) wasm_v128_load64_zero(p)
#define V_LOAD32(u) wasm_i32x4_make((int32_t)(u), 0, 0, 0)
#define V_ADD32(a, b) wasm_i32x4_add(a, b)
#define V_MADD16(a, b) wasm_i32x4_dot_i16x8(a, b)
#define V_DUP_LO64(v) wasm_i64x2_shuffle(v, v, 0, 0)
#define V_DUP_HI64(v) wasm_i64x2_shuffle(v, v, 1, 1)
static inline v128 widen_lo(v128 v) { return wasm_i16x8_extend_low_i8x16(v); }
static inline v128 widen_hi(v128 v) { return wasm_i16x8_extend_high_i8x16(v); }
static inline int32_t lanes01(v128 v) { return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1); }
static inline int32_t lanes23(v128 v) { return wasm_i32x4_extract_lane(v, 2) + wasm_i32x4_extract_lane(v, 3); }
#endif

VAE_EDGE_INLINE const uint32_t *mac_2x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[4]) {
  v128 sa = V_ZERO(), sq = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 4) { /* 16 weight bytes: c[i..i+3] c'[i..i+3] c[i+4..i+7] c'[i+4..i+7] */
    const v128 wv = V_LOAD(w);
    const v128 w0 = widen_lo(wv), w1 = widen_hi(wv);
    const v128 xa = V_LOAD(x + i);
    const v128 xb = V_LOAD(x + sb + i);
    sa = V_ADD32(sa, V_MADD16(w0, V_DUP_LO64(xa)));
    sa = V_ADD32(sa, V_MADD16(w1, V_DUP_HI64(xa)));
    sq = V_ADD32(sq, V_MADD16(w0, V_DUP_LO64(xb)));
    sq = V_ADD32(sq, V_MADD16(w1, V_DUP_HI64(xb)));
  }
  if (i < n) { /* four inputs left: c[i..i+3] c'[i..i+3] */
    const v128 w0 = widen_lo(V_LOAD64(w));
    const v128 xa = V_LOAD64(x + i);
    const v128 xb = V_LOAD64(x + sb + i);
    sa = V_ADD32(sa, V_MADD16(w0, V_DUP_LO64(xa)));
    sq = V_ADD32(sq, V_MADD16(w0, V_DUP_LO64(xb)));
    w += 2;
  }
  acc[0] += lanes01(sa);
  acc[1] += lanes01(sq);
  acc[2] += lanes23(sa);
  acc[3] += lanes23(sq);
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x2(const uint32_t *w, const int16_t *x, int sb, int n, int32_t acc[2]) {
  v128 sa = V_ZERO(), sq = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 2) {
    const v128 w0 = widen_lo(V_LOAD64(w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD(x + i)));
    sq = V_ADD32(sq, V_MADD16(w0, V_LOAD(x + sb + i)));
  }
  if (i < n) {
    const v128 w0 = widen_lo(V_LOAD32(*w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD64(x + i)));
    sq = V_ADD32(sq, V_MADD16(w0, V_LOAD64(x + sb + i)));
    w += 1;
  }
  acc[0] += lanes01(sa) + lanes23(sa);
  acc[1] += lanes01(sq) + lanes23(sq);
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_2x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  v128 sa = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 4) {
    const v128 wv = V_LOAD(w);
    const v128 xa = V_LOAD(x + i);
    sa = V_ADD32(sa, V_MADD16(widen_lo(wv), V_DUP_LO64(xa)));
    sa = V_ADD32(sa, V_MADD16(widen_hi(wv), V_DUP_HI64(xa)));
  }
  if (i < n) {
    const v128 w0 = widen_lo(V_LOAD64(w));
    const v128 xa = V_LOAD64(x + i);
    sa = V_ADD32(sa, V_MADD16(w0, V_DUP_LO64(xa)));
    w += 2;
  }
  acc[0] += lanes01(sa);
  acc[2] += lanes23(sa);
  return w;
}

VAE_EDGE_INLINE const uint32_t *mac_1x1(const uint32_t *w, const int16_t *x, int n, int32_t *acc) {
  v128 sa = V_ZERO();
  int i = 0;
  for (; i + 8 <= n; i += 8, w += 2) {
    const v128 w0 = widen_lo(V_LOAD64(w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD(x + i)));
  }
  if (i < n) {
    const v128 w0 = widen_lo(V_LOAD32(*w));
    sa = V_ADD32(sa, V_MADD16(w0, V_LOAD64(x + i)));
    w += 1;
  }
  acc[0] += lanes01(sa) + lanes23(sa);
  return w;
}
/* vae-edge: copy end */
#endif
