// The CPU fallback: each architecture's forward pass in plain JS, from the same
// manifest and float32 weights the WebGPU kernels use.
//
// Why not interpret the WGSL kernels instead: that needs a WGSL parser and evaluator
// (workgroup memory, barriers, bitcasts) far larger than these two forward passes, and
// a bug in it would hide exactly when WebGPU is missing. The price is that a new
// architecture needs a function here; the parity tests compare both backends to tinygrad.

function dense(input, weight, bias, inputs, outputs) {
  const out = new Float32Array(outputs);
  for (let o = 0; o < outputs; o++) {
    let sum = 0;
    const row = o * inputs;
    for (let i = 0; i < inputs; i++) sum += weight[row + i] * input[i];
    out[o] = sum + bias[o];
  }
  return out;
}

function relu(values) {
  for (let i = 0; i < values.length; i++) if (!(values[i] > 0)) values[i] = 0;
  return values;
}

/** Same-padded 2D convolution of a (C, H, W) image with a (K, C, k, k) kernel. */
function conv2d(input, channels, side, weight, bias, kernels, size) {
  const pad = size >> 1;
  const out = new Float32Array(kernels * side * side);
  for (let k = 0; k < kernels; k++) {
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        let sum = 0;
        for (let c = 0; c < channels; c++) {
          const plane = c * side * side;
          const taps = (k * channels + c) * size * size;
          for (let dy = 0; dy < size; dy++) {
            const yy = y + dy - pad;
            if (yy < 0 || yy >= side) continue;
            for (let dx = 0; dx < size; dx++) {
              const xx = x + dx - pad;
              if (xx < 0 || xx >= side) continue;
              sum += weight[taps + dy * size + dx] * input[plane + yy * side + xx];
            }
          }
        }
        out[(k * side + y) * side + x] = sum + bias[k];
      }
    }
  }
  return out;
}

/** 2x2 max-pool with stride 2, dropping an odd last row/column as tinygrad does. */
function maxPool2(input, channels, side) {
  const half = side >> 1;
  const out = new Float32Array(channels * half * half);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < half; y++) {
      for (let x = 0; x < half; x++) {
        const at = c * side * side + 2 * y * side + 2 * x;
        out[(c * half + y) * half + x] = Math.max(input[at], input[at + 1], input[at + side], input[at + side + 1]);
      }
    }
  }
  return out;
}

function normalize(pixels, { mean, std }) {
  const scale = Math.fround(1 / std);
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = (pixels[i] - mean) * scale;
  return out;
}

function shapeOf(manifest, name) {
  const entry = manifest.weights[name];
  if (!entry) throw new Error(`${manifest.name}: the CPU fallback needs weight ${name}, not in the manifest`);
  return entry.shape;
}

function mlp(manifest, weights) {
  const layers = [];
  for (let i = 0; `layers.${i}.weight` in manifest.weights; i++) {
    const [outputs, inputs] = shapeOf(manifest, `layers.${i}.weight`);
    layers.push({ weight: weights.get(`layers.${i}.weight`), bias: weights.get(`layers.${i}.bias`), inputs, outputs });
  }
  return (x) => {
    layers.forEach((l, i) => {
      x = dense(x, l.weight, l.bias, l.inputs, l.outputs);
      if (i < layers.length - 1) relu(x);
    });
    return x;
  };
}

function cnn(manifest, weights) {
  const convs = [];
  for (let i = 0; `convs.${i}.weight` in manifest.weights; i++) {
    const [kernels, channels, size] = shapeOf(manifest, `convs.${i}.weight`);
    convs.push({ weight: weights.get(`convs.${i}.weight`), bias: weights.get(`convs.${i}.bias`), kernels, channels, size });
  }
  const [hidden, flat] = shapeOf(manifest, "fc1.weight");
  const [classes] = shapeOf(manifest, "fc2.weight");
  return (x) => {
    let side = 28;
    for (const c of convs) {
      x = maxPool2(relu(conv2d(x, c.channels, side, c.weight, c.bias, c.kernels, c.size)), c.kernels, side);
      side >>= 1;
    }
    const h = relu(dense(x, weights.get("fc1.weight"), weights.get("fc1.bias"), flat, hidden));
    return dense(h, weights.get("fc2.weight"), weights.get("fc2.bias"), hidden, classes);
  };
}

const ARCHITECTURES = { mlp, cnn };

/** A backend with the WebGPU backend's interface: run(pixels) -> Promise<Float32Array logits>. */
export function createCPUBackend(manifest, weights) {
  const build = ARCHITECTURES[manifest.model.arch];
  if (!build) throw new Error(`${manifest.name}: no CPU fallback for architecture ${manifest.model.arch}`);
  const forward = build(manifest, weights);
  const norm = manifest.model.normalize;
  return {
    name: "cpu",
    lost: false,
    async run(pixels) {
      return forward(normalize(pixels, norm));
    },
    dispose() {},
  };
}
