// Public API: load an exported model and classify 28x28 digits.
//
//   const model = await loadModel(manifestUrl, { backend: "auto" }); // "auto" | "webgpu" | "cpu"
//   const { probs, logits, ms, backend } = await model.predict(pixels); // Float32Array(784) in [0, 1]
//   model.dispose();
//
// "auto" uses WebGPU when it works and falls back to the CPU when it does not (no
// navigator.gpu, no adapter, a device or pipeline error, or a lost device that cannot be
// re-created). Weight files are resolved relative to the manifest, so the site works
// under any base path.

import { createCPUBackend } from "./cpu.js";
import { expandWeights, parseSafetensors } from "./safetensors.js";
import { createWebGPUBackend } from "./webgpu.js";

const BACKENDS = ["auto", "webgpu", "cpu"];
const PIXELS = 28 * 28;

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

function checkManifest(manifest, url) {
  const required = ["name", "model", "input", "output", "buffers", "kernels", "weights", "forms", "default_form"];
  const missing = required.filter((key) => !(key in manifest));
  if (manifest.format !== 1 || missing.length) {
    throw new Error(`${url}: not a format-1 model manifest (missing: ${missing.join(", ") || "none"})`);
  }
}

function softmax(logits) {
  const peak = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp(v - peak));
  const total = exps.reduce((a, b) => a + b, 0);
  return Float32Array.from(exps, (e) => e / total);
}

function asPixels(pixels) {
  if (!pixels || pixels.length !== PIXELS) {
    throw new Error(`predict() takes ${PIXELS} pixels (28x28, white ink on black, in [0, 1]), got ${pixels?.length}`);
  }
  return Float32Array.from(pixels); // a copy: the caller may draw on while the call waits in the queue
}

/**
 * @param {string} manifestUrl  URL of build/webgpu/<name>/manifest.json, relative to the page
 * @param {{backend?: "auto"|"webgpu"|"cpu", form?: string}} options  form: "f32" | "f16" | "int8" (default: the manifest's)
 */
export async function loadModel(manifestUrl, options = {}) {
  const requested = options.backend ?? "auto";
  if (!BACKENDS.includes(requested)) throw new Error(`backend must be one of ${BACKENDS.join(", ")}, got ${requested}`);
  const base = new URL(manifestUrl, globalThis.location?.href);
  const manifest = await (await fetchOk(base)).json();
  checkManifest(manifest, base);
  const formName = options.form ?? manifest.default_form;
  const form = manifest.forms.find((f) => f.form === formName);
  if (!form) throw new Error(`${base}: no weight form ${formName} (has ${manifest.forms.map((f) => f.form).join(", ")})`);
  const weightsUrl = new URL(form.file, base);
  const bytes = await (await fetchOk(weightsUrl)).arrayBuffer();
  if (bytes.byteLength !== form.bytes) {
    throw new Error(`${weightsUrl}: ${bytes.byteLength} bytes, the manifest says ${form.bytes}`);
  }
  const weights = expandWeights(parseSafetensors(bytes, form.file), manifest.weights, form.file);

  let fallbackReason = null;
  async function startWebGPU() {
    const backend = await createWebGPUBackend(manifest, weights);
    try {
      await backend.run(new Float32Array(PIXELS)); // a first run surfaces shader and dispatch errors now
    } catch (err) {
      backend.dispose();
      throw err;
    }
    return backend;
  }
  async function start() {
    if (requested !== "cpu") {
      try {
        return await startWebGPU();
      } catch (err) {
        if (requested === "webgpu") throw err;
        fallbackReason = err.message;
      }
    }
    return createCPUBackend(manifest, weights);
  }

  let backend = await start();
  let queue = Promise.resolve();
  let disposed = false;

  async function predictNow(pixels) {
    if (disposed) throw new Error(`model ${manifest.name} was disposed`);
    if (backend.lost) {
      // a lost device (driver reset, tab in background too long) comes back on the next call
      backend.dispose();
      backend = await start();
      model.backend = backend.name;
      model.fallbackReason = fallbackReason;
    }
    const started = performance.now();
    const logits = await backend.run(pixels);
    const ms = performance.now() - started;
    return { probs: softmax(logits), logits, ms, backend: backend.name };
  }

  const model = {
    name: manifest.name,
    backend: backend.name,
    form: form.form,
    fallbackReason,
    manifest,
    /** One inference at a time: the GPU buffers are shared, so calls are queued. */
    predict(pixels) {
      const input = asPixels(pixels);
      const result = queue.then(() => predictNow(input));
      queue = result.catch(() => {});
      return result;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      queue.then(() => backend.dispose());
    },
  };
  return model;
}
