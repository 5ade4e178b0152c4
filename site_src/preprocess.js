// MNIST-like preprocessing of a drawing, from the pad's pointer paths:
//
//   strokes  ->  Float32Array(28*28), white ink on black, values in [0, 1]
//
// The steps that made MNIST's digits (the drawing's box scaled to 20 px on its long side,
// its centre of mass moved to pixel (14, 14) by whole pixels), then a deskew, as the models'
// MNIST digits were. No normalization: the model does its own.

export const SIZE = 28;
export const BOX = 20;
export const CENTER = 14;

// --- strokes rendered as vectors: the stroke width does not depend on the drawing's size ---
//
// The pad records every pointer path. Rather than rasterizing the pad and shrinking it (a
// digit drawn small comes out with strokes a third of its height), the visible pen centre
// lines' bounding box, widened by one stroke, is scaled to BOX px on its long side and the
// paths are rendered there STROKE px wide, whatever the pad's pen width; eraser strokes cut
// at their own pad width, scaled alike. Then the image is moved by whole pixels so that its
// centre of mass lands on pixel (14, 14), as MNIST's, and the drawing is deskewed
// (below), as the models' MNIST digits were. The Python
// reference is mnist_webgpu/strokes.py render_strokes; tests/unit/drawings/test_pen.py holds the two equal.

export const STROKE = 2.5; // px in the 28x28 image: MNIST-like (chosen on validation drawn digits)
export const SUPERSAMPLE = 4; // coverage samples per pixel, per axis
export const MIN_EXTENT = 0.04; // smaller drawings (pad fractions) are scaled as if this big
// pad fractions between the points whose box is the drawing's box: a long straight segment
// whose end was rubbed out keeps its visible part in the box
export const BOX_STEP = 0.005;

function segmentDistance2(px, py, ax, ay, bx, by) {
  const dx = bx - ax;
  const dy = by - ay;
  const dd = dx * dx + dy * dy;
  let t = dd === 0 ? 0 : ((px - ax) * dx + (py - ay) * dy) / dd;
  t = Math.min(1, Math.max(0, t));
  const ex = px - ax - t * dx;
  const ey = py - ay - t * dy;
  return ex * ex + ey * ey;
}

function segments(points) {
  const out = [];
  if (points.length === 1) out.push([points[0], points[0]]);
  for (let i = 1; i < points.length; i++) out.push([points[i - 1], points[i]]);
  return out;
}

function dense(points) {
  const out = [points[0]];
  for (let i = 1; i < points.length; i++) {
    const [ax, ay] = points[i - 1];
    const dx = points[i][0] - ax;
    const dy = points[i][1] - ay;
    const n = Math.max(1, Math.ceil(Math.sqrt(dx * dx + dy * dy) / BOX_STEP));
    for (let k = 1; k <= n; k++) out.push([ax + (k / n) * dx, ay + (k / n) * dy]);
  }
  return out;
}

// the pen points that no later eraser stroke covers: their box is the drawing's box
function visibleBox(strokes) {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  strokes.forEach((s, k) => {
    if (s.tool === "eraser") return;
    for (const [px, py] of dense(s.points)) {
      let alive = true;
      for (let j = k + 1; j < strokes.length && alive; j++) {
        const e = strokes[j];
        if (e.tool !== "eraser") continue;
        const r2 = (e.width / 2) ** 2;
        for (const [a, b] of segments(e.points)) {
          if (segmentDistance2(px, py, a[0], a[1], b[0], b[1]) <= r2) {
            alive = false;
            break;
          }
        }
      }
      if (!alive) continue;
      x0 = Math.min(x0, px);
      y0 = Math.min(y0, py);
      x1 = Math.max(x1, px);
      y1 = Math.max(y1, py);
    }
  });
  return x1 < x0 ? null : { x0, y0, x1, y1 };
}

function raster(strokes, scale, ox, oy, stroke) {
  const n = SIZE * SUPERSAMPLE;
  const ink = new Uint8Array(n * n);
  for (const s of strokes) {
    const pen = s.tool !== "eraser";
    const r = pen ? stroke / 2 : (s.width * scale) / 2;
    const pts = s.points.map(([x, y]) => [(x - ox) * scale, (y - oy) * scale]);
    for (const [a, b] of segments(pts)) {
      const lx = Math.min(n, Math.max(0, Math.floor((Math.min(a[0], b[0]) - r) * SUPERSAMPLE)));
      const ly = Math.min(n, Math.max(0, Math.floor((Math.min(a[1], b[1]) - r) * SUPERSAMPLE)));
      const hx = Math.min(n, Math.max(0, Math.ceil((Math.max(a[0], b[0]) + r) * SUPERSAMPLE)));
      const hy = Math.min(n, Math.max(0, Math.ceil((Math.max(a[1], b[1]) + r) * SUPERSAMPLE)));
      for (let y = ly; y < hy; y++) {
        const cy = (y + 0.5) / SUPERSAMPLE;
        for (let x = lx; x < hx; x++) {
          const cx = (x + 0.5) / SUPERSAMPLE;
          if (segmentDistance2(cx, cy, a[0], a[1], b[0], b[1]) <= r * r) ink[y * n + x] = pen ? 1 : 0;
        }
      }
    }
  }
  const out = new Float64Array(SIZE * SIZE);
  const per = SUPERSAMPLE * SUPERSAMPLE;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      if (ink[y * n + x]) out[((y / SUPERSAMPLE) | 0) * SIZE + ((x / SUPERSAMPLE) | 0)] += 1 / per;
    }
  }
  return out;
}

// strokes: [{tool: "pen" | "eraser", width: pad fraction, points: [[x, y], ...] pad fractions}]
// -> { pixels: Float32Array(784), empty, extent: the drawing's long side in pad fractions }
export function preprocessStrokes(strokes, stroke = STROKE) {
  const pixels = new Float32Array(SIZE * SIZE);
  const box = visibleBox(strokes);
  if (!box) return { pixels, empty: true, extent: 0 };
  const extent = Math.max(box.x1 - box.x0, box.y1 - box.y0);
  const scale = (BOX - stroke) / Math.max(extent, MIN_EXTENT);
  // the box's middle on the image's middle: its 20 px long side falls on whole pixels
  const ox = (box.x0 + box.x1) / 2 - SIZE / 2 / scale;
  const oy = (box.y0 + box.y1) / 2 - SIZE / 2 / scale;
  const image = raster(strokes, scale, ox, oy, stroke);
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < image.length; i++) {
    mass += image[i];
    mx += image[i] * (i % SIZE);
    my += image[i] * Math.floor(i / SIZE);
  }
  if (mass <= 0) return { pixels, empty: true, extent };
  // whole-pixel shift of the centre of mass to (14, 14), as MNIST's digits were placed
  const dx = Math.floor(CENTER - mx / mass + 0.5);
  const dy = Math.floor(CENTER - my / mass + 0.5);
  const centred = new Float64Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    const ty = y + dy;
    if (ty < 0 || ty >= SIZE) continue;
    for (let x = 0; x < SIZE; x++) {
      const tx = x + dx;
      if (tx >= 0 && tx < SIZE) centred[ty * SIZE + tx] = image[y * SIZE + x];
    }
  }
  pixels.set(deskew(centred));
  return { pixels, empty: false, extent };
}

// --- deskew: the models see every digit upright, MNIST's and the pad's alike ---
//
// Row y moves sideways by shear * (y - cy): shear is the ink's covariance of x and y over
// its variance in y, cy its centre of mass. The drawing's main axis stands upright and the
// centre of mass stays put; linear interpolation along the row, zeros outside. A drawing
// with little height (a dash) is left as it is, and a stroke leaning further than
// MAX_SHEAR columns per row is not laid flat. The Python reference is strokes.py deskew.

export const MAX_SHEAR = 0.5; // keep equal to strokes.py
export const MIN_SPREAD = 1.0; // px^2

export function deskew(image) {
  let mass = 0;
  let my = 0;
  let mx = 0;
  const rowMass = new Float64Array(SIZE);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const v = image[y * SIZE + x];
      rowMass[y] += v;
      mx += v * x;
    }
    mass += rowMass[y];
    my += rowMass[y] * y;
  }
  const out = new Float64Array(SIZE * SIZE);
  if (mass <= 0) return out;
  const cy = my / mass;
  const cx = mx / mass;
  let spread = 0;
  let cov = 0;
  for (let y = 0; y < SIZE; y++) {
    let rowX = 0;
    for (let x = 0; x < SIZE; x++) rowX += image[y * SIZE + x] * (x - cx);
    spread += rowMass[y] * (y - cy) * (y - cy);
    cov += rowX * (y - cy);
  }
  spread /= mass;
  cov /= mass;
  const shear = spread >= MIN_SPREAD ? Math.min(MAX_SHEAR, Math.max(-MAX_SHEAR, cov / spread)) : 0;
  const at = (y, x) => (x >= 0 && x < SIZE ? image[y * SIZE + x] : 0);
  for (let y = 0; y < SIZE; y++) {
    const move = shear * (y - cy);
    const left = Math.floor(move);
    const w = move - left;
    for (let x = 0; x < SIZE; x++) {
      out[y * SIZE + x] = at(y, x + left) * (1 - w) + at(y, x + left + 1) * w;
    }
  }
  return out;
}
