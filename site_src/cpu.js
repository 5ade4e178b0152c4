// The CPU fallback: the models' forward pass on the WebAssembly SIMD kernels of kernels.wat
// (assembled into kernels.wasm when the site is built), from the same manifest and float32
// weights the WebGPU kernels use. The layers, their names and shapes come from the manifest.
//
// Each model gets its own instance of the module: its weights are laid out in the
// instance's memory once, in the order the kernels read them, next to the activation
// buffers; a run copies 784 pixels in and the logits out, nothing else crosses.
//
// Why not interpret the WGSL kernels instead: that needs a WGSL parser and evaluator
// (workgroup memory, barriers, bitcasts) far larger than these two forward passes, and
// a bug in it would hide exactly when WebGPU is missing. The price is that a new kind of
// layer needs code here; the parity tests compare both backends to tinygrad.

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

/**
 * The model's layers in the order the forward pass runs them, from the manifest alone: its
 * weights grouped by owner (`<layer>.weight` and `<layer>.bias`), ordered by the first kernel
 * (in dispatch order) that reads them; a 4-d weight is a conv, a 2-d one a dense layer.
 */
export function layersOf(manifest) {
  const order = [];
  for (const kernel of manifest.kernels) {
    for (const b of kernel.bindings) if (b.kind === "weight" && !order.includes(b.name)) order.push(b.name);
  }
  const layers = new Map();
  for (const name of order) {
    const m = /^(.+)\.(weight|bias)$/.exec(name);
    const entry = manifest.weights[name];
    if (!m || !entry) throw new Error(`${manifest.name}: the CPU fallback cannot place weight ${name}`);
    const layer = layers.get(m[1]) ?? { name: m[1] };
    layer[m[2]] = entry.shape;
    layers.set(m[1], layer);
  }
  for (const name of Object.keys(manifest.weights)) {
    if (!order.includes(name)) throw new Error(`${manifest.name}: no kernel reads weight ${name}`);
  }
  const list = [...layers.values()];
  for (const l of list) {
    const kind = { 4: "conv", 2: "dense" }[l.weight?.length];
    if (!kind || l.bias?.length !== 1 || l.bias[0] !== l.weight[0]) {
      throw new Error(`${manifest.name}: layer ${l.name} is neither a conv nor a dense layer with a bias`);
    }
    l.kind = kind;
  }
  const firstDense = list.findIndex((l) => l.kind === "dense");
  if (firstDense < 0 || list.slice(firstDense).some((l) => l.kind !== "dense")) {
    throw new Error(`${manifest.name}: the CPU fallback runs convs then dense layers, not ${list.map((l) => l.kind)}`);
  }
  return list;
}

/**
 * Dense `layer` for the `dense` kernel: weights [block][input][16], `n` inputs (rounded up to
 * even), outputs in whole blocks, the padding zero. `column(i)` is the weight column of kernel
 * input i, or -1 for padding (a dense layer after convs reads channel-last activations).
 */
function denseLayer(layout, weights, layer, n, column = null) {
  const [outputs, inputs] = layer.weight;
  const weight = weights.get(`${layer.name}.weight`);
  column ??= (i) => (i < inputs ? i : -1);
  n = roundUp(n, 2);
  const blocks = Math.ceil(outputs / LANES);
  const w = new Float32Array(blocks * n * LANES);
  const b = new Float32Array(blocks * LANES);
  b.set(weights.get(`${layer.name}.bias`));
  for (let i = 0; i < n; i++) {
    const col = column(i);
    if (col < 0) continue;
    for (let o = 0; o < outputs; o++) {
      w[(Math.floor(o / LANES) * n + i) * LANES + (o % LANES)] = weight[o * inputs + col];
    }
  }
  const dense = { n, blocks, outputs, w: layout.take(w.length, w), b: layout.take(b.length, b) };
  dense.y = layout.take(blocks * LANES);
  return dense;
}

/** Conv `layer` (K, C, k, k) for the `conv` kernel: weights [block][dy][dx][c][16], c over `stride` floats a pixel. */
function convLayer(layout, weights, layer, stride, modelName) {
  const [kernels, channels, size, width] = layer.weight;
  if (size !== width || size % 2 === 0) throw new Error(`${modelName}: ${layer.name} is not an odd square kernel`);
  const weight = weights.get(`${layer.name}.weight`);
  const taps = size * size;
  const blocks = Math.ceil(kernels / LANES);
  const w = new Float32Array(blocks * taps * stride * LANES);
  const b = new Float32Array(blocks * LANES);
  b.set(weights.get(`${layer.name}.bias`));
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

/**
 * Both architectures of models.py as one network: blocks of conv -> ReLU -> 2x2 max-pool
 * (none for the MLP), then dense layers with a ReLU between them.
 */
function network({ manifest, weights }, layout, layers) {
  const input = layout.take(SIDE * SIDE);
  const convs = [];
  let side = SIDE;
  let channels = 1; // floats a pixel of the activations (whole blocks of channels after a conv)
  for (const layer of layers.filter((l) => l.kind === "conv")) {
    const conv = convLayer(layout, weights, layer, channels, manifest.name);
    const padded = side + conv.size - 1; // "same" padding: a zero border of size >> 1, never written
    conv.in = layout.take(padded * padded * channels);
    conv.inside = conv.in + (conv.size >> 1) * (padded + 1) * channels * FLOAT;
    conv.out = layout.take(side * side * conv.blocks * LANES);
    convs.push(Object.assign(conv, { side, channels, padded }));
    channels = conv.blocks * LANES;
    side >>= 1;
  }
  const heads = layers.filter((l) => l.kind === "dense");
  const [, flat] = heads[0].weight;
  const kernels = convs.length ? convs.at(-1).kernels : 1;
  if (flat !== kernels * side * side) {
    throw new Error(`${manifest.name}: ${heads[0].name} takes ${flat} inputs, not ${kernels}x${side}x${side}`);
  }
  // activations after a conv are channel-last, tinygrad flattens (C, H, W): kernel input i is
  // pixel i / channels, channel i % channels
  const column = convs.length
    ? (i) => (i % channels < kernels ? (i % channels) * side * side + Math.floor(i / channels) : -1)
    : null;
  const dense = [];
  let x = convs.length ? null : layout.take(SIDE * SIDE); // normalized pixels
  for (const layer of heads) {
    const prev = dense.at(-1);
    const d = denseLayer(layout, weights, layer, prev ? prev.blocks * LANES : side * side * channels, prev ? null : column);
    d.x = prev ? prev.y : (x ??= layout.take(d.n)); // after convs: the last pool writes here
    dense.push(d);
  }
  x = dense[0].x;
  const last = dense.at(-1);
  return {
    input,
    output: last.y,
    classes: last.outputs,
    run(k, norm) {
      if (convs.length) {
        const first = convs[0];
        k.normalize(input, SIDE, SIDE, first.inside, first.padded * FLOAT, norm.mean, norm.scale);
      } else {
        k.normalize(input, SIDE, SIDE, x, SIDE * FLOAT, norm.mean, norm.scale);
      }
      convs.forEach((c, i) => {
        k.conv(c.in, c.side, c.side, c.channels, c.size, c.w, c.b, c.out, c.blocks);
        // ReLU and pool into the inside of the next conv's bordered input, or the head's input
        const next = convs[i + 1];
        const pixel = c.blocks * LANES;
        const rowBytes = (next ? next.padded : c.side >> 1) * pixel * FLOAT;
        k.relu_pool(c.out, c.side, c.side, pixel, next ? next.inside : x, rowBytes);
      });
      dense.forEach((d, i) => k.dense(d.x, d.n, d.w, d.b, d.y, d.blocks, i < dense.length - 1 ? 1 : 0));
    },
  };
}

// what each architecture of models.py is made of, checked against the manifest's layers
const ARCHITECTURES = {
  mlp: (convs) => convs === 0,
  cnn: (convs) => convs > 0,
};

/** A backend with the WebGPU backend's interface: run(pixels) -> Promise<Float32Array logits>. */
export async function createCPUBackend(manifest, weights) {
  const fits = ARCHITECTURES[manifest.model.arch];
  if (!fits) throw new Error(`${manifest.name}: no CPU fallback for architecture ${manifest.model.arch}`);
  const layers = layersOf(manifest);
  const convs = layers.filter((l) => l.kind === "conv").length;
  if (!fits(convs)) throw new Error(`${manifest.name}: a ${manifest.model.arch} with ${convs} conv layers`);
  const layout = new Layout();
  const net = network({ manifest, weights }, layout, layers);
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
