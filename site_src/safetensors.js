// Parse and validate safetensors files, and expand a weight form to float32.
// Everything a server (or a truncated download) could get wrong becomes one Error
// naming the file and the problem, before any of it reaches a GPU buffer.

const ITEM_BYTES = { F32: 4, F16: 2, I8: 1 };
const MAX_HEADER_BYTES = 16 * 1024 * 1024; // far above any real header; stops absurd allocations
export const SCALE_SUFFIX = ".scale";

function fail(source, message) {
  throw new Error(`${source}: ${message}`);
}

function isCount(v) {
  return Number.isSafeInteger(v) && v >= 0;
}

/** Map name -> { dtype, shape, bytes: Uint8Array (own copy, so typed views are aligned) }. */
export function parseSafetensors(buffer, source = "safetensors file") {
  if (!(buffer instanceof ArrayBuffer)) fail(source, "expected an ArrayBuffer");
  if (buffer.byteLength < 8) fail(source, `${buffer.byteLength} bytes is too short for a safetensors file`);
  const view = new DataView(buffer);
  const low = view.getUint32(0, true);
  const high = view.getUint32(4, true);
  if (high !== 0 || low > MAX_HEADER_BYTES) fail(source, "header length is implausibly large");
  if (8 + low > buffer.byteLength) {
    fail(source, `header claims ${low} bytes but the file has only ${buffer.byteLength - 8} after the length`);
  }
  let header;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(buffer, 8, low)));
  } catch (err) {
    fail(source, `header is not valid JSON (${err.message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    fail(source, "header is not a JSON object");
  }
  const dataStart = 8 + low;
  const dataBytes = buffer.byteLength - dataStart;
  const tensors = new Map();
  const spans = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (info === null || typeof info !== "object") fail(source, `${name}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = info;
    if (!(dtype in ITEM_BYTES)) fail(source, `${name}: unsupported dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) fail(source, `${name}: shape is not a list of counts`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      fail(source, `${name}: data_offsets is not a pair of byte offsets`);
    }
    const [begin, end] = offsets;
    if (begin > end || end > dataBytes) {
      fail(source, `${name}: data_offsets [${begin}, ${end}] fall outside the ${dataBytes} data bytes`);
    }
    const needed = shape.reduce((a, b) => a * b, 1) * ITEM_BYTES[dtype];
    if (end - begin !== needed) {
      fail(source, `${name}: ${end - begin} data bytes for shape [${shape}] of ${dtype}, which needs ${needed}`);
    }
    spans.push([begin, end, name]);
    tensors.set(name, { dtype, shape, bytes: new Uint8Array(buffer.slice(dataStart + begin, dataStart + end)) });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) fail(source, `${spans[i][2]} overlaps ${spans[i - 1][2]}`);
  }
  return tensors;
}

/** IEEE half (as a uint16) to a JS number; exact. */
export function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * `values` (row-major, `shape`) with its axes in `order`: numpy's a.transpose(order), copied.
 * The files keep the layout a model trains in; the exporter may choose another for the kernels.
 */
export function transpose(values, shape, order, what = "tensor") {
  const n = shape.length;
  if (order.length !== n || [...order].sort((a, b) => a - b).some((v, i) => v !== i)) {
    throw new Error(`${what}: order [${order}] is not a permutation of ${n} axes`);
  }
  const strides = new Array(n);
  for (let i = n - 1, s = 1; i >= 0; s *= shape[i], i--) strides[i] = s;
  const outShape = order.map((a) => shape[a]);
  const outStrides = order.map((a) => strides[a]); // source stride of each output axis
  const out = new Float32Array(values.length);
  const index = new Array(n).fill(0);
  let src = 0;
  for (let dst = 0; dst < out.length; dst++) {
    out[dst] = values[src];
    // odometer over the output's axes, last fastest, moving `src` by source strides
    for (let k = n - 1; k >= 0; k--) {
      src += outStrides[k];
      if (++index[k] < outShape[k]) break;
      src -= outStrides[k] * outShape[k];
      index[k] = 0;
    }
  }
  return out;
}

function sameShape(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Float32Array per weight from one form's tensors (f32 as is, f16 widened exactly,
 * int8 times its per-row f32 scale), checked against the manifest's names and shapes,
 * then laid out as the kernels read them.
 * `expected`: { name: { shape, order? } } from manifest.weights.
 */
export function expandWeights(tensors, expected, source = "weights") {
  const used = new Set();
  const out = new Map();
  for (const [name, { shape, order }] of Object.entries(expected)) {
    const t = tensors.get(name);
    if (!t) fail(source, `missing tensor ${name}`);
    if (!sameShape(t.shape, shape)) fail(source, `${name} has shape [${t.shape}], the manifest says [${shape}]`);
    used.add(name);
    const count = shape.reduce((a, b) => a * b, 1);
    let values;
    if (t.dtype === "F32") {
      values = new Float32Array(t.bytes.buffer, t.bytes.byteOffset, count);
    } else if (t.dtype === "F16") {
      const halves = new Uint16Array(t.bytes.buffer, t.bytes.byteOffset, count);
      values = new Float32Array(count);
      for (let i = 0; i < count; i++) values[i] = halfToFloat(halves[i]);
    } else {
      const scaleName = name + SCALE_SUFFIX;
      const s = tensors.get(scaleName);
      const rows = shape[0];
      if (!s || s.dtype !== "F32" || !sameShape(s.shape, [rows])) {
        fail(source, `${name} is int8 but ${scaleName} is not a float32 tensor of shape [${rows}]`);
      }
      used.add(scaleName);
      const scales = new Float32Array(s.bytes.buffer, s.bytes.byteOffset, rows);
      const q = new Int8Array(t.bytes.buffer, t.bytes.byteOffset, count);
      const perRow = count / rows;
      values = new Float32Array(count);
      // Float32Array stores round the double product once: the same value numpy's float32 multiply gives
      for (let i = 0; i < count; i++) values[i] = q[i] * scales[Math.floor(i / perRow)];
    }
    // a NaN or Infinity weight would only surface as "NaN% sure" on the page: refuse it here
    for (let i = 0; i < count; i++) {
      if (!Number.isFinite(values[i])) {
        fail(source, `${name} holds a non-finite weight (${values[i]}) at index ${i}; the file is corrupt`);
      }
    }
    out.set(name, order ? transpose(values, shape, order, `${source}: ${name}`) : values);
  }
  for (const name of tensors.keys()) {
    if (!used.has(name)) fail(source, `unexpected tensor ${name} (not in the manifest)`);
  }
  return out;
}
