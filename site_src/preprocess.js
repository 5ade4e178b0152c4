// MNIST-like preprocessing of a drawing: the same steps that made the MNIST digits.
//
//   ink (any size, values in [0,1], 1 = ink)  ->  Float32Array(28*28), white ink on black
//
// 1. crop to the bounding box of the ink;
// 2. scale so the long side is 20 px, keeping the aspect ratio, by exact area averaging
//    (each output pixel is the mean of the source area it covers: a box filter, never
//    nearest-neighbour, so thin strokes turn into grey levels as in MNIST);
// 3. place it in 28x28 with its center of mass at pixel (14, 14), shifting by the
//    rounded offset (MNIST's own centers of mass sit at 14.0 +- 0.3 in pixel indices).
// No normalization: the model does its own. tests/test_app.py checks this file against a
// Python reference of the same algorithm.

export const SIZE = 28;
export const BOX = 20;
export const CENTER = 14;

// For one axis: which source pixels (relative to the crop) each output pixel covers, and
// how much. Output pixel o spans [o*f, (o+1)*f) in source pixels; weights sum to 1 (f > 0).
export function areaWeights(outN, f) {
  const rows = [];
  for (let o = 0; o < outN; o++) {
    const a = o * f;
    const b = (o + 1) * f;
    const taps = [];
    for (let i = Math.floor(a); i < Math.ceil(b); i++) {
      const cover = Math.min(i + 1, b) - Math.max(i, a);
      if (cover > 0) taps.push([i, cover / f]);
    }
    rows.push(taps);
  }
  return rows;
}

export function boundingBox(ink, width, height) {
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      if (ink[row + x] > 0) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x0, y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
}

export function preprocess(ink, width, height) {
  const pixels = new Float32Array(SIZE * SIZE);
  const box = boundingBox(ink, width, height);
  if (!box) return { pixels, empty: true };
  const { x0, y0, w, h } = box;
  const long = Math.max(w, h);
  const f = long / BOX; // source pixels per output pixel, the same on both axes
  const ow = Math.max(1, Math.floor((w * BOX) / long + 0.5));
  const oh = Math.max(1, Math.floor((h * BOX) / long + 0.5));
  const wx = areaWeights(ow, f);
  const wy = areaWeights(oh, f);
  const at = (x, y) => (x < w && y < h ? ink[(y0 + y) * width + x0 + x] : 0);

  // separable box filter: rows first (h x ow), then columns (oh x ow)
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    for (let o = 0; o < ow; o++) {
      let s = 0;
      for (const [i, c] of wx[o]) s += at(i, y) * c;
      tmp[y * ow + o] = s;
    }
  }
  const small = new Float64Array(oh * ow);
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let o = 0; o < oh; o++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (const [i, c] of wy[o]) if (i < h) s += tmp[i * ow + x] * c;
      s = Math.min(1, Math.max(0, s));
      small[o * ow + x] = s;
      mass += s;
      mx += s * x;
      my += s * o;
    }
  }
  if (mass <= 0) return { pixels, empty: true };
  const dx = Math.floor(CENTER - mx / mass + 0.5);
  const dy = Math.floor(CENTER - my / mass + 0.5);
  for (let y = 0; y < oh; y++) {
    const ty = y + dy;
    if (ty < 0 || ty >= SIZE) continue;
    for (let x = 0; x < ow; x++) {
      const tx = x + dx;
      if (tx >= 0 && tx < SIZE) pixels[ty * SIZE + tx] = small[y * ow + x];
    }
  }
  return { pixels, empty: false };
}
