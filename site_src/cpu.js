// The CPU fallback: each architecture's forward pass on the WebAssembly SIMD kernels of
// kernels.wat (assembled into kernels.wasm when the site is built), from the same manifest
// and float32 weights the WebGPU kernels use.
//
// Each model gets its own instance of the module: its weights are laid out in the
// instance's memory once, in the order the kernels read them, next to the activation
// buffers; a run copies 784 pixels in and the logits out, nothing else crosses.
//
// Why not interpret the WGSL kernels instead: that needs a WGSL parser and evaluator
// (workgroup memory, barriers, bitcasts) far larger than these two forward passes, and
// a bug in it would hide exactly when WebGPU is missing. The price is that a new
// architecture needs a function here; the parity tests compare both backends to tinygrad.

const KERNELS_URL = new URL("./kernels.wasm", import.meta.url);
const LANES = 16; // outputs and channels per block of the kernels (four f32x4 accumulators)
const FLOAT = 4;
const PAGE = 65536;
const SIDE = 28;

let compiled = null;

/** The compiled kernels, fetched and compiled once per page (a failure is retried next time). */
function loadKernels() {
  compiled ??= (async () => {
    if (typeof WebAssembly !== "object") {
      throw new Error("the CPU fallback needs WebAssembly, which this browser does not have");
    }
    const response = await fetch(KERNELS_URL);
    if (!response.ok) throw new Error(`${KERNELS_URL}: HTTP ${response.status}`);
    const bytes = await response.arrayBuffer();
    try {
      return await WebAssembly.compile(bytes);
    } catch (err) {
      // an old engine without SIMD, or a Content-Security-Policy without 'wasm-unsafe-eval'
      throw new Error(`the CPU fallback cannot compile its WebAssembly SIMD kernels: ${err.message}`);
    }
  })();
  compiled.catch(() => {
    compiled = null;
  });
  return compiled;
}

const roundUp = (n, m) => Math.ceil(n / m) * m;

/** Byte offsets of float buffers in the instance's memory, each 16-byte aligned. */
class Layout {
  constructor() {
    this.bytes = 0;
    this.fills = [];
  }
  /** A buffer of `floats` floats, zero or filled with `values` (written once the memory exists). */
  take(floats, values = null) {
    const at = this.bytes;
    this.bytes += roundUp(floats * FLOAT, 16);
    if (values) this.fills.push([at, values]);
    return at;
  }
}

function shapeOf(manifest, name) {
  const entry = manifest.weights[name];
  if (!entry) throw new Error(`${manifest.name}: the CPU fallback needs weight ${name}, not in the manifest`);
  return entry.shape;
}

/**
 * Dense layer `name` for the `dense` kernel: weights [block][input][16], `n` inputs (rounded
 * up to even), outputs in whole blocks, the padding zero. `column(i)` is the weight column
 * of kernel input i, or -1 for padding (the CNN's head reads channel-last activations).
 */
function denseLayer(layout, { manifest, weights }, name, n, column = null) {
  const [outputs, inputs] = shapeOf(manifest, `${name}.weight`);
  const weight = weights.get(`${name}.weight`);
  column ??= (i) => (i < inputs ? i : -1);
  n = roundUp(n, 2);
  const blocks = Math.ceil(outputs / LANES);
  const w = new Float32Array(blocks * n * LANES);
  const b = new Float32Array(blocks * LANES);
  b.set(weights.get(`${name}.bias`));
  for (let i = 0; i < n; i++) {
    const col = column(i);
    if (col < 0) continue;
    for (let o = 0; o < outputs; o++) {
      w[(Math.floor(o / LANES) * n + i) * LANES + (o % LANES)] = weight[o * inputs + col];
    }
  }
  const layer = { n, blocks, outputs, w: layout.take(w.length, w), b: layout.take(b.length, b) };
  layer.y = layout.take(blocks * LANES);
  return layer;
}

/** Conv `name` (K, C, k, k) for the `conv` kernel: weights [block][dy][dx][c][16], c over `stride` floats a pixel. */
function convLayer(layout, { manifest, weights }, name, stride) {
  const [kernels, channels, size, width] = shapeOf(manifest, `${name}.weight`);
  if (size !== width || size % 2 === 0) throw new Error(`${manifest.name}: ${name} is not an odd square kernel`);
  const weight = weights.get(`${name}.weight`);
  const taps = size * size;
  const blocks = Math.ceil(kernels / LANES);
  const w = new Float32Array(blocks * taps * stride * LANES);
  const b = new Float32Array(blocks * LANES);
  b.set(weights.get(`${name}.bias`));
  for (let k = 0; k < kernels; k++) {
    for (let c = 0; c < channels; c++) {
      for (let t = 0; t < taps; t++) {
        const at = ((Math.floor(k / LANES) * taps + t) * stride + c) * LANES + (k % LANES);
        w[at] = weight[(k * channels + c) * taps + t];
      }
    }
  }
  return { kernels, size, blocks, w: layout.take(w.length, w), b: layout.take(b.length, b) };
}

function mlp(model, layout) {
  const layers = [];
  const input = layout.take(SIDE * SIDE);
  const x = layout.take(SIDE * SIDE); // normalized
  for (let i = 0; `layers.${i}.weight` in model.manifest.weights; i++) {
    const n = i ? layers[i - 1].blocks * LANES : SIDE * SIDE;
    layers.push({ ...denseLayer(layout, model, `layers.${i}`, n), x: i ? layers[i - 1].y : x });
  }
  const last = layers.at(-1);
  return {
    input,
    output: last.y,
    classes: last.outputs,
    run(k, norm) {
      k.normalize(input, SIDE, SIDE, x, SIDE * FLOAT, norm.mean, norm.scale);
      layers.forEach((l, i) => k.dense(l.x, l.n, l.w, l.b, l.y, l.blocks, i < layers.length - 1));
    },
  };
}

function cnn(model, layout) {
  const input = layout.take(SIDE * SIDE);
  const convs = [];
  let side = SIDE;
  let channels = 1; // floats a pixel of the activations (whole blocks of channels after a conv)
  for (let i = 0; `convs.${i}.weight` in model.manifest.weights; i++) {
    const conv = convLayer(layout, model, `convs.${i}`, channels);
    const padded = side + conv.size - 1; // "same" padding: a zero border of size >> 1, never written
    conv.in = layout.take(padded * padded * channels);
    conv.inside = conv.in + (conv.size >> 1) * (padded + 1) * channels * FLOAT;
    conv.out = layout.take(side * side * conv.blocks * LANES);
    convs.push(Object.assign(conv, { side, channels, padded }));
    channels = conv.blocks * LANES;
    side >>= 1;
  }
  // activations are channel-last, tinygrad flattens (C, H, W): kernel input i is pixel
  // i / channels, channel i % channels
  const { kernels } = convs.at(-1);
  const [, flat] = shapeOf(model.manifest, "fc1.weight");
  if (flat !== kernels * side * side) {
    throw new Error(`${model.manifest.name}: fc1 takes ${flat} inputs, not ${kernels}x${side}x${side}`);
  }
  const column = (i) => (i % channels < kernels ? (i % channels) * side * side + Math.floor(i / channels) : -1);
  const fc1 = denseLayer(layout, model, "fc1", side * side * channels, column);
  const x = layout.take(fc1.n);
  const fc2 = denseLayer(layout, model, "fc2", fc1.blocks * LANES);
  return {
    input,
    output: fc2.y,
    classes: fc2.outputs,
    run(k, norm) {
      const first = convs[0];
      k.normalize(input, SIDE, SIDE, first.inside, first.padded * FLOAT, norm.mean, norm.scale);
      convs.forEach((c, i) => {
        k.conv(c.in, c.side, c.side, c.channels, c.size, c.w, c.b, c.out, c.blocks);
        // ReLU and pool into the inside of the next conv's bordered input, or the head's input
        const next = convs[i + 1];
        const pixel = c.blocks * LANES;
        const rowBytes = (next ? next.padded : c.side >> 1) * pixel * FLOAT;
        k.relu_pool(c.out, c.side, c.side, pixel, next ? next.inside : x, rowBytes);
      });
      k.dense(x, fc1.n, fc1.w, fc1.b, fc1.y, fc1.blocks, 1);
      k.dense(fc1.y, fc2.n, fc2.w, fc2.b, fc2.y, fc2.blocks, 0);
    },
  };
}

const ARCHITECTURES = { mlp, cnn };

/** A backend with the WebGPU backend's interface: run(pixels) -> Promise<Float32Array logits>. */
export async function createCPUBackend(manifest, weights) {
  const build = ARCHITECTURES[manifest.model.arch];
  if (!build) throw new Error(`${manifest.name}: no CPU fallback for architecture ${manifest.model.arch}`);
  const layout = new Layout();
  const net = build({ manifest, weights }, layout);
  const module = await loadKernels();
  const k = (await WebAssembly.instantiate(module)).exports;
  const pages = Math.ceil(layout.bytes / PAGE) - k.memory.buffer.byteLength / PAGE;
  if (pages > 0) k.memory.grow(pages);
  const memory = new Float32Array(k.memory.buffer); // the memory never grows again: this view stays valid
  for (const [at, values] of layout.fills) memory.set(values, at / FLOAT);
  const { mean, std } = manifest.model.normalize;
  const norm = { mean: Math.fround(mean), scale: Math.fround(1 / std) };
  return {
    name: "cpu",
    lost: false,
    async run(pixels) {
      memory.set(pixels, net.input / FLOAT);
      net.run(k, norm);
      return memory.slice(net.output / FLOAT, net.output / FLOAT + net.classes);
    },
    dispose() {},
  };
}
