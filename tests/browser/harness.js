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
};
window.harnessReady = true;
