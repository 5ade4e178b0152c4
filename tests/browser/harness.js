// Drives the runtime for tests/test_browser_parity.py and bench/browser_latency.py.
import { loadModel } from "../runtime/runtime.js";

async function inputs(url) {
  return new Float32Array(await (await fetch(url)).arrayBuffer());
}

window.harness = {
  /** Logits of the first `count` images of inputsUrl, one predict() at a time. */
  async logits(manifestUrl, options, inputsUrl, count) {
    const pixels = await inputs(inputsUrl);
    const model = await loadModel(manifestUrl, options);
    const logits = [];
    const probsSums = [];
    for (let i = 0; i < count; i++) {
      const r = await model.predict(pixels.subarray(i * 784, (i + 1) * 784));
      if (r.backend !== model.backend) throw new Error(`predict ran on ${r.backend}, model says ${model.backend}`);
      logits.push(Array.from(r.logits));
      probsSums.push(r.probs.reduce((a, b) => a + b, 0));
    }
    // many calls at once must queue, not share buffers: the same answers as one by one
    const burst = await Promise.all(
      Array.from({ length: 16 }, (_, i) => model.predict(pixels.subarray(i * 784, (i + 1) * 784))),
    );
    model.dispose();
    return {
      backend: model.backend,
      form: model.form,
      fallbackReason: model.fallbackReason,
      logits,
      burst: burst.map((r) => Array.from(r.logits)),
      probsSums,
    };
  },

  /** Median and p95 ms of predict(), and load-to-first-prediction ms. */
  async latency(manifestUrl, options, inputsUrl, runs) {
    const pixels = await inputs(inputsUrl);
    const started = performance.now();
    const model = await loadModel(manifestUrl, options);
    await model.predict(pixels.subarray(0, 784));
    const firstMs = performance.now() - started;
    const times = [];
    for (let i = 0; i < runs; i++) {
      const at = (i % (pixels.length / 784)) * 784;
      times.push((await model.predict(pixels.subarray(at, at + 784))).ms);
    }
    model.dispose();
    times.sort((a, b) => a - b);
    const pick = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
    return { backend: model.backend, firstMs, median: pick(0.5), p95: pick(0.95) };
  },

  /**
   * Destroys the GPU device under a loaded model, as a driver reset would lose it, then
   * predicts again. With `adapterGone`, no adapter is offered any more, so the runtime
   * must carry on on the CPU.
   */
  async deviceLoss(manifestUrl, inputsUrl, adapterGone) {
    const first = (await inputs(inputsUrl)).subarray(0, 784);
    const devices = [];
    const { requestDevice } = GPUAdapter.prototype;
    const { requestAdapter } = GPU.prototype;
    GPUAdapter.prototype.requestDevice = async function (...args) {
      const device = await requestDevice.apply(this, args);
      devices.push(device);
      return device;
    };
    try {
      const model = await loadModel(manifestUrl, { backend: "auto" });
      const before = await model.predict(first);
      const lost = devices[0].lost;
      devices[0].destroy();
      const { reason } = await lost;
      if (adapterGone) GPU.prototype.requestAdapter = async () => null;
      const after = await model.predict(first);
      model.dispose();
      return {
        reason,
        devicesRequested: devices.length,
        before: { backend: before.backend, logits: Array.from(before.logits) },
        after: { backend: after.backend, logits: Array.from(after.logits) },
        modelBackend: model.backend,
        fallbackReason: model.fallbackReason,
      };
    } finally {
      GPUAdapter.prototype.requestDevice = requestDevice;
      GPU.prototype.requestAdapter = requestAdapter;
    }
  },
};
/**
 * The backend "fastest" picks for a model, and why. With `pretendHardware`, the adapter says it
 * is not a software one, so the runtime has to race the two backends.
 */
harness.fastest = async (manifestUrl, pretendHardware) => {
  const info = Object.getOwnPropertyDescriptor(GPUAdapterInfo.prototype, "isFallbackAdapter");
  if (pretendHardware) Object.defineProperty(GPUAdapterInfo.prototype, "isFallbackAdapter", { get: () => false, configurable: true });
  try {
    const model = await loadModel(manifestUrl, { backend: "fastest" });
    const r = await model.predict(new Float32Array(784));
    model.dispose();
    return { backend: model.backend, ran: r.backend, reason: model.backendReason, fallbackReason: model.fallbackReason };
  } finally {
    if (info) Object.defineProperty(GPUAdapterInfo.prototype, "isFallbackAdapter", info);
  }
};
window.harnessReady = true;
