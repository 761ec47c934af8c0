/* float32 kernels for the browser's float decoder (tools/web/wasm.py emits the calls). NHWC tensors, batch 1.
 * Convolution weights come transposed to (KH, KW, I, O) and dense weights to (D, N), so every inner loop runs
 * over output channels in contiguous memory: the compiler vectorizes it (WebAssembly SIMD) without reordering a
 * sum, so each output is accumulated in the same order on every platform. */
#ifndef VAE_EDGE_FLOAT_KERNELS_H_
#define VAE_EDGE_FLOAT_KERNELS_H_

#define VAE_EDGE_MAX_CHANNELS 512

/* TFLite's fused activations: 0 NONE, 1 RELU, 2 RELU6, 3 RELU_N1_TO_1. */
static float activate(float v, int act) {
  if (act == 1) return v > 0.0f ? v : 0.0f;
  if (act == 2) return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
  if (act == 3) return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
  return v;
}

static void dense(const float *x, int d, const float *w_dn, const float *bias, int n, int act, float *y) {
  for (int o = 0; o < n; ++o) y[o] = bias[o];
  for (int i = 0; i < d; ++i) {
    const float xv = x[i];
    const float *w = w_dn + (long)i * n;
    for (int o = 0; o < n; ++o) y[o] += xv * w[o];
  }
  if (act)
    for (int o = 0; o < n; ++o) y[o] = activate(y[o], act);
}

static void pad(const float *x, int h, int w, int c, int top, int bottom, int left, int right, float *y) {
  const int ow = w + left + right;
  for (int i = 0; i < (h + top + bottom) * ow * c; ++i) y[i] = 0.0f;
  for (int r = 0; r < h; ++r)
    for (int q = 0; q < w * c; ++q) y[((r + top) * ow + left) * c + q] = x[r * w * c + q];
}

/* The input row (or column) output position o reads through tap k, or -1 if none. A convolution: o * s + k -
 * pad, inside the input (outside it the input is zero). TFLite's TRANSPOSE_CONV in gather form: the i with
 * i * s + k - pad == o, taps landing outside the output dropped as TFLite drops them. */
static int tap_source(int o, int k, int s, int pad, int n, int transposed) {
  if (!transposed) {
    const int i = o * s + k - pad;
    return i >= 0 && i < n ? i : -1;
  }
  const int t = o + pad - k;
  return t >= 0 && t % s == 0 && t / s < n ? t / s : -1;
}

/* CONV_2D (transposed = 0) or TRANSPOSE_CONV (1) of stride (sh, sw), weights (KH, KW, I, O); the bias, or zero
 * where the graph has none (bias NULL), is added first. */
static void convolve(const float *x, int h, int w, int c, const float *k_hwio, const float *bias, int kh, int kw,
                     int sh, int sw, int pad_top, int pad_left, int oh, int ow, int oc, int act, int transposed,
                     float *y) {
  float acc[VAE_EDGE_MAX_CHANNELS];
  for (int oy = 0; oy < oh; ++oy)
    for (int ox = 0; ox < ow; ++ox) {
      for (int o = 0; o < oc; ++o) acc[o] = bias ? bias[o] : 0.0f;
      for (int ky = 0; ky < kh; ++ky) {
        const int iy = tap_source(oy, ky, sh, pad_top, h, transposed);
        if (iy < 0) continue;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = tap_source(ox, kx, sw, pad_left, w, transposed);
          if (ix < 0) continue;
          const float *xp = x + ((long)iy * w + ix) * c;
          const float *kp = k_hwio + ((long)(ky * kw + kx) * c) * oc;
          for (int i = 0; i < c; ++i) {
            const float xv = xp[i];
            const float *k = kp + (long)i * oc;
            for (int o = 0; o < oc; ++o) acc[o] += xv * k[o];
          }
        }
      }
      float *yp = y + ((long)oy * ow + ox) * oc;
      for (int o = 0; o < oc; ++o) yp[o] = activate(acc[o], act);
    }
}

/* Standalone activations: RELU (act 1) and RELU6 (act 2) as activate(); LEAKY_RELU as TFLite's float kernel,
 * v > 0 ? v : alpha * v. */
static void activation(const float *x, int n, int act, float *y) {
  for (int i = 0; i < n; ++i) y[i] = activate(x[i], act);
}

static void leaky_relu(const float *x, int n, float alpha, float *y) {
  for (int i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
}

/* TFLite's DEPTH_TO_SPACE (DCR): output (bs*r + i, bs*q + j, k) = input (r, q, (bs*i + j) * c/bs^2 + k). */
static void depth_to_space(const float *x, int h, int w, int c, int bs, float *y) {
  const int oc = c / (bs * bs);
  for (int r = 0; r < h; ++r)
    for (int q = 0; q < w; ++q)
      for (int i = 0; i < bs; ++i)
        for (int j = 0; j < bs; ++j)
          for (int k = 0; k < oc; ++k)
            y[((long)(bs * r + i) * w * bs + bs * q + j) * oc + k] = x[((long)r * w + q) * c + (bs * i + j) * oc + k];
}

#endif
