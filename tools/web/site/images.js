// Drawing decoded images on canvases (app.js): any H x W x C, grey (C = 1) or RGB (C = 3), values mapped
// through a range to black..white.

// An image of the model's shape (H x W x C, row-major; C = 1 grey, 3 RGB) on a canvas of H x W pixels, each
// value v shown as (v - lo) / (hi - lo) of full brightness, clamped.
export function drawImage(canvas, values, model, [lo, hi], colour = null) {
  const [h, w, c] = model.image.shape;
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.aspectRatio = `${w} / ${h}`;
  }
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  paint(img.data, 0, w, values, model, [lo, hi], colour);
  ctx.putImageData(img, 0, 0);
}

// Write one image's RGBA bytes into `data` (row stride `stride` pixels) from its top-left pixel `offset`.
export function paint(data, offset, stride, values, model, [lo, hi], colour = null) {
  const [h, w, c] = model.image.shape;
  const span = hi > lo ? hi - lo : 1;
  const byte = (v) => Math.round(255 * Math.min(1, Math.max(0, (v - lo) / span)));
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * c;
      const at = 4 * (offset + y * stride + x);
      if (colour) data.set([...colour(values[i] / span), 255], at);
      else if (c === 3) data.set([byte(values[i]), byte(values[i + 1]), byte(values[i + 2]), 255], at);
      else data.set([byte(values[i]), byte(values[i]), byte(values[i]), 255], at);
    }
}

// The values mapped to black..white: the model's range, or (a linear output) the images' own min..max.
export function displayRange(model, ...images) {
  if (model.image.range) return model.image.range;
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of images)
    for (const v of values) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

export const heat = (d) => {
  const v = Math.min(1, d * 10);
  return [Math.round(255 * v), Math.round(80 * v), 0];
};
