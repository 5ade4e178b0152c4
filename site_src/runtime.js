// Public API: load an exported model and classify 28x28 digits.
//
//   const model = await loadModel(manifestUrl, { backend: "auto" }); // "auto" | "fastest" | "webgpu" | "cpu"
//   const { probs, notDigit, threshold, logits, ms, backend } = await model.predict(pixels); // Float32Array(784) in [0, 1]
//   model.dispose();
//
// probs: the ten digits' probabilities, summing to 1 (what it would be, were it a digit);
// notDigit: p("not a digit") for a model trained with that 11th output, else null. Both come
// from softmax(logits / T) over every output, T the manifest's decline.temperature
// (calibrated on validation drawings); verdict.js compares notDigit with its threshold.
//
// "auto" uses WebGPU when it works and falls back to the CPU when it does not (no
// navigator.gpu, no adapter, a device or pipeline error, or a lost device that cannot be
// re-created). "fastest" (the app's choice) also runs on the CPU when the only WebGPU adapter
// is a software one, and otherwise keeps whichever wins a short warm-up race on this model.
// model.backendReason says why, in words. Weight files are resolved relative to the manifest,
// so the site works under any base path.
//
// A model whose files cannot be trusted (a manifest off its format or with numbers the page
// cannot compute with, a weight file whose SHA-256 is not the manifest's) fails to load, and
// one whose outputs are not finite probabilities fails to predict, with a BrokenModelError:
// the page shows a broken model, never an answer made from it. A server that does not answer
// gives a plain Error: the model did not load, and may next time.

import { createCPUBackend } from "./cpu.js";
import { expandWeights, parseSafetensors } from "./safetensors.js";
import { FallbackAdapterError, createWebGPUBackend } from "./webgpu.js";

const BACKENDS = ["auto", "fastest", "webgpu", "cpu"];
const MANIFEST_FORMAT = 3; // mnist_webgpu.core.records.MANIFEST_FORMAT
const PIXELS = 28 * 28;
const WARMUP_RUNS = 5; // per backend, after one untimed run; the median decides

export class BrokenModelError extends Error {
  constructor(message) {
    super(message);
    this.name = "BrokenModelError";
  }
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

const finitePositive = (v) => Number.isFinite(v) && v > 0;

function checkManifest(manifest, url) {
  const required = ["name", "model", "input", "output", "buffers", "kernels", "weights", "forms", "default_form", "cpu"];
  const missing = required.filter((key) => !(key in (manifest ?? {})));
  if (manifest?.format !== MANIFEST_FORMAT || missing.length) {
    throw new BrokenModelError(
      `${url}: not a format-${MANIFEST_FORMAT} model manifest (missing: ${missing.join(", ") || "none"})`,
    );
  }
  // the numbers the page computes with, as verify checks them (a file may change after it)
  const { decline } = manifest;
  if (decline != null && !finitePositive(decline.temperature)) {
    throw new BrokenModelError(`${url}: decline.temperature is ${decline.temperature}, not a number > 0`);
  }
  if (decline != null && !(Number.isFinite(decline.threshold) && decline.threshold >= 0 && decline.threshold <= 1)) {
    throw new BrokenModelError(`${url}: decline.threshold is ${decline.threshold}, not a fraction between 0 and 1`);
  }
  manifest.kernels.forEach((k, i) => {
    if (!Array.isArray(k.dispatch) || !k.dispatch.every((n) => Number.isInteger(n) && n > 0)) {
      throw new BrokenModelError(`${url}: kernels[${i}].dispatch is ${JSON.stringify(k.dispatch)}, not workgroup counts > 0`);
    }
  });
}

async function checkDigest(bytes, form, url) {
  if (bytes.byteLength !== form.bytes) {
    throw new BrokenModelError(`${url}: ${bytes.byteLength} bytes, the manifest says ${form.bytes}`);
  }
  // crypto.subtle exists only in secure contexts (https:, and http://127.0.0.1 or localhost): a
  // preview served to another machine over plain http keeps the size check and the output check
  if (!globalThis.crypto?.subtle) return;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  if (hex !== form.sha256) throw new BrokenModelError(`${url}: its SHA-256 is not the one the manifest records`);
}

export function softmax(logits, temperature = 1) {
  const peak = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp((v - peak) / temperature));
  const total = exps.reduce((a, b) => a + b, 0);
  return Float32Array.from(exps, (e) => e / total);
}

/** The ten digits' probabilities (renormalized), p(not a digit) and the threshold it is
 * judged by (verdict.js), from all the logits and the manifest's decline rule. */
export function readLogits(logits, decline) {
  const all = softmax(logits, decline?.temperature ?? 1);
  const digits = all.slice(0, 10);
  const mass = digits.reduce((a, b) => a + b, 0);
  const notDigit = all.length > 10 ? all[10] : null;
  const probs = digits.map((p) => p / mass);
  // Infinity or NaN in the logits (huge weights overflow float32) make NaN probabilities
  if (!Array.from(logits).every(Number.isFinite) || !probs.every(Number.isFinite) || Number.isNaN(notDigit)) {
    throw new BrokenModelError("its outputs are not finite probabilities");
  }
  return { probs, notDigit, threshold: decline?.threshold ?? null };
}

function asPixels(pixels) {
  if (!pixels || pixels.length !== PIXELS) {
    throw new Error(`predict() takes ${PIXELS} pixels (28x28, white ink on black, in [0, 1]), got ${pixels?.length}`);
  }
  return Float32Array.from(pixels); // a copy: the caller may draw on while the call waits in the queue
}

/**
 * @param {string} manifestUrl  URL of build/webgpu/<name>/manifest.json, relative to the page
 * @param {{backend?: "auto"|"fastest"|"webgpu"|"cpu", form?: string}} options  form: "f32" | "f16" | "int8" (default: the manifest's)
 */
export async function loadModel(manifestUrl, options = {}) {
  const requested = options.backend ?? "auto";
  if (!BACKENDS.includes(requested)) throw new Error(`backend must be one of ${BACKENDS.join(", ")}, got ${requested}`);
  const base = new URL(manifestUrl, globalThis.location?.href);
  const response = await fetchOk(base);
  const manifest = await response.json().catch((err) => {
    throw new BrokenModelError(`${base}: not JSON (${err.message})`);
  });
  checkManifest(manifest, base);
  const formName = options.form ?? manifest.default_form;
  const form = manifest.forms.find((f) => f.form === formName);
  if (!form) throw new Error(`${base}: no weight form ${formName} (has ${manifest.forms.map((f) => f.form).join(", ")})`);
  const weightsUrl = new URL(form.file, base);
  const bytes = await (await fetchOk(weightsUrl)).arrayBuffer();
  await checkDigest(bytes, form, weightsUrl);
  let weights;
  try {
    weights = expandWeights(parseSafetensors(bytes, form.file), manifest.weights, form.file);
  } catch (err) {
    throw new BrokenModelError(err.message);
  }

  const cpuOptions = { url: new URL(manifest.cpu.file, base) }; // the CPU module, beside the manifest
  let reason = null; // why this backend, in words
  let fallbackReason = null; // why "auto" is not on WebGPU, when WebGPU did not start
  async function startWebGPU() {
    const backend = await createWebGPUBackend(manifest, weights, { allowFallback: requested !== "fastest" });
    try {
      await backend.run(new Float32Array(PIXELS)); // a first run surfaces shader and dispatch errors now
    } catch (err) {
      backend.dispose();
      throw err;
    }
    return backend;
  }
  async function start() {
    if (requested === "cpu") {
      reason = "asked for";
      return createCPUBackend(manifest, weights, cpuOptions);
    }
    let gpu;
    try {
      gpu = await startWebGPU();
    } catch (err) {
      if (requested === "webgpu") throw err;
      fallbackReason = err.message;
      reason = err instanceof FallbackAdapterError ? `${err.message}: the CPU path is faster` : `WebGPU failed: ${err.message}`;
      return createCPUBackend(manifest, weights, cpuOptions);
    }
    if (requested === "fastest") return race(gpu);
    reason = requested === "webgpu" ? "asked for" : "WebGPU works here";
    return gpu;
  }
  // A one-time warm-up race on this model: a few inferences on each, the faster one stays.
  async function race(gpu) {
    let cpu;
    try {
      cpu = await createCPUBackend(manifest, weights, cpuOptions);
    } catch (err) {
      reason = `the CPU path cannot start here (${err.message})`;
      return gpu;
    }
    const input = new Float32Array(PIXELS);
    const time = async (b) => {
      await b.run(input);
      const runs = [];
      for (let i = 0; i < WARMUP_RUNS; i++) {
        const t0 = performance.now();
        await b.run(input);
        runs.push(performance.now() - t0);
      }
      return runs.sort((a, b) => a - b)[runs.length >> 1];
    };
    const gpuMs = await time(gpu);
    const cpuMs = await time(cpu);
    const [winner, loser] = cpuMs < gpuMs ? [cpu, gpu] : [gpu, cpu];
    loser.dispose();
    const ms = (v) => `${v.toFixed(2)} ms`;
    reason = `faster in a warm-up here: ${winner.name === "cpu" ? "CPU" : "WebGPU"} ${ms(Math.min(gpuMs, cpuMs))}, ${
      winner.name === "cpu" ? "WebGPU" : "CPU"
    } ${ms(Math.max(gpuMs, cpuMs))}`;
    return winner;
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
      model.backendReason = reason;
      model.fallbackReason = fallbackReason;
    }
    const started = performance.now();
    const logits = await backend.run(pixels);
    const ms = performance.now() - started;
    return { ...readLogits(logits, manifest.decline), logits, ms, backend: backend.name };
  }

  const model = {
    name: manifest.name,
    backend: backend.name,
    form: form.form,
    backendReason: reason,
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
