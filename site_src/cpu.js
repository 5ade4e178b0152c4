// The CPU fallback: the model's own WebAssembly module (cpu.wasm beside its manifest), compiled
// by the exporter from tinygrad's C rendering of the same kernels the WebGPU backend runs, so
// any model tinygrad can trace runs here too and no layer is written by hand.
//
// The module imports nothing and exports its `memory`, `arena` (the address of one static
// array holding every buffer at the offsets manifest.cpu.offsets gives) and `net()`, which
// runs the kernels in the schedule's order. Each model gets its own instance: its weights
// are written into the arena once; a run copies 784 pixels in, calls net() and copies the
// logits out, nothing else crosses.

const FLOAT = 4;
// what the module exports, by the kind of object each is (read when a backend starts: a
// browser without WebAssembly must still load this file, to say so)
const EXPORTS = () => ({ memory: WebAssembly.Memory, arena: WebAssembly.Global, net: Function });

const compiled = new Map(); // module URL -> Promise<WebAssembly.Module>

/** The model's module, fetched and compiled once per page (a failure is retried next time). */
function loadModule(url, cpu) {
  const key = url.href;
  if (!compiled.has(key)) {
    const promise = (async () => {
      if (typeof WebAssembly !== "object") {
        throw new Error("the CPU fallback needs WebAssembly, which this browser does not have");
      }
      const response = await fetch(url);
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      const bytes = await response.arrayBuffer();
      if (bytes.byteLength !== cpu.bytes) throw new Error(`${url}: ${bytes.byteLength} bytes, the manifest says ${cpu.bytes}`);
      try {
        return await WebAssembly.compile(bytes);
      } catch (err) {
        // an old engine without SIMD, or a Content-Security-Policy without 'wasm-unsafe-eval'
        throw new Error(`the CPU fallback cannot compile its WebAssembly SIMD kernels: ${err.message}`);
      }
    })();
    promise.catch(() => compiled.delete(key));
    compiled.set(key, promise);
  }
  return compiled.get(key);
}

/** Where buffer `id` lives in the instance's memory, as a float index, checked against the arena. */
function placeOf(manifest, base, id, floats) {
  const { cpu } = manifest;
  const offset = cpu.offsets[id];
  if (!Number.isInteger(offset) || offset % 16 !== 0 || offset + floats * FLOAT > cpu.arena_bytes) {
    throw new Error(`${manifest.name}: the CPU module has no place for buffer ${id}`);
  }
  return (base + offset) / FLOAT;
}

/**
 * A backend with the WebGPU backend's interface: run(pixels) -> Promise<Float32Array logits>.
 * `url`: the module's URL (manifest.cpu.file resolved against the manifest's).
 */
export async function createCPUBackend(manifest, weights, { url } = {}) {
  const { cpu } = manifest;
  if (!cpu?.file || !cpu.offsets) throw new Error(`${manifest.name}: the manifest names no CPU module`);
  const module = await loadModule(url ?? new URL(cpu.file, globalThis.location?.href), cpu);
  const exports = (await WebAssembly.instantiate(module, {})).exports;
  for (const [name, type] of Object.entries(EXPORTS())) {
    if (!(exports[name] instanceof type)) throw new Error(`${manifest.name}: the CPU module exports no ${name}`);
  }
  const base = exports.arena.value;
  if (base % 16 !== 0 || base + cpu.arena_bytes > exports.memory.buffer.byteLength) {
    throw new Error(`${manifest.name}: the CPU module's arena is not where the manifest expects it`);
  }
  const memory = new Float32Array(exports.memory.buffer); // the module never grows its memory
  for (const b of manifest.buffers) {
    if (b.kind !== "weight") continue;
    const values = weights.get(b.name);
    if (!values || values.length * FLOAT !== b.bytes) throw new Error(`${manifest.name}: no weights for ${b.name}`);
    memory.set(values, placeOf(manifest, base, b.id, values.length));
  }
  const pixels = manifest.input.shape.reduce((a, b) => a * b, 1);
  const classes = manifest.output.shape.reduce((a, b) => a * b, 1);
  const input = placeOf(manifest, base, manifest.input.buffer, pixels);
  const output = placeOf(manifest, base, manifest.output.buffer, classes);
  const net = exports.net;
  return {
    name: "cpu",
    lost: false,
    async run(values) {
      memory.set(values, input);
      net();
      return memory.slice(output, output + classes);
    },
    dispose() {},
  };
}
