/* float32 kernels for the browser's float decoder (tools/web/wasm.py emits the calls). NHWC tensors, batch 1.
 * Convolution weights come transposed to (KH, KW, I, O) and dense weights to (D, N), so every inner loop runs
 * over output channels in contiguous memory: the compiler vectorizes it (WebAssembly SIMD) without reordering a
 * sum, so each output is accumulated in the same order on every platform. */
#ifndef VAE_EDGE_FLOAT_KERNELS_H_
#define VAE_EDGE_FLOAT_KERNELS_H_

#define VAE_EDGE_MAX_CHANNELS 512

static void dense(const float *x, int d, const float *w_dn, const float *bias, int n, int relu, float *y) {
  for (int o = 0; o < n; ++o) y[o] = bias[o];
  for (int i = 0; i < d; ++i) {
    const float xv = x[i];
    const float *w = w_dn + (long)i * n;
    for (int o = 0; o < n; ++o) y[o] += xv * w[o];
  }
  if (relu)
    for (int o = 0; o < n; ++o) y[o] = y[o] > 0.0f ? y[o] : 0.0f;
}

static void pad(const float *x, int h, int w, int c, int top, int bottom, int left, int right, float *y) {
  const int ow = w + left + right;
  for (int i = 0; i < (h + top + bottom) * ow * c; ++i) y[i] = 0.0f;
  for (int r = 0; r < h; ++r)
    for (int q = 0; q < w * c; ++q) y[((r + top) * ow + left) * c + q] = x[r * w * c + q];
}

/* Stride-1 convolution; input pixels outside the image (pad_top/pad_left before, the rest after) are zero. */
static void conv2d(const float *x, int h, int w, int c, const float *k_hwio, const float *bias, int kh, int kw,
                   int pad_top, int pad_left, int oh, int ow, int oc, int relu, float *y) {
  float acc[VAE_EDGE_MAX_CHANNELS];
  for (int oy = 0; oy < oh; ++oy)
    for (int ox = 0; ox < ow; ++ox) {
      for (int o = 0; o < oc; ++o) acc[o] = bias[o];
      for (int ky = 0; ky < kh; ++ky) {
        const int iy = oy + ky - pad_top;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = ox + kx - pad_left;
          if (ix < 0 || ix >= w) continue;
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
      for (int o = 0; o < oc; ++o) yp[o] = relu && acc[o] < 0.0f ? 0.0f : acc[o];
    }
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
