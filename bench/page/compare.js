// Warm latency of our runtime and ONNX Runtime Web in one page, interleaved, and their argmax.
import { argmax, loadOrt, loadOurs } from "./engines.js";

async function inputs(url) {
  return new Float32Array(await (await fetch(url)).arrayBuffer());
}

async function timed(engine, pixels) {
  const started = performance.now();
  const logits = await engine.predict(pixels);
  return { ms: performance.now() - started, logits };
}

window.bench = {
  /**
   * One pair: our runtime on `backend` against ONNX Runtime Web on `ep`, same weights, same images.
   * Every image goes through both (argmax check); then `rounds` rounds each time one prediction
   * of each engine on the same image, the order alternating so neither always runs second.
   */
  async pair({ manifestUrl, form, backend, onnxUrl, ep, inputsUrl, count, rounds, warmup }) {
    const pixels = await inputs(inputsUrl);
    const image = (i) => pixels.subarray((i % count) * 784, ((i % count) + 1) * 784);
    const ours = await loadOurs(manifestUrl, backend, form);
    const theirs = await loadOrt(onnxUrl, ep);
    try {
      const oursArgmax = [];
      const theirsArgmax = [];
      let maxAbsDiff = 0;
      for (let i = 0; i < count; i++) {
        const a = await ours.predict(image(i));
        const b = await theirs.predict(image(i));
        oursArgmax.push(argmax(a));
        theirsArgmax.push(argmax(b));
        for (let j = 0; j < a.length; j++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[j] - b[j]));
      }
      for (let i = 0; i < warmup; i++) {
        await ours.predict(image(i));
        await theirs.predict(image(i));
      }
      const oursMs = [];
      const theirsMs = [];
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 ? [theirs, ours] : [ours, theirs];
        const times = {};
        for (const engine of order) times[engine.name] = (await timed(engine, image(r))).ms;
        oursMs.push(times[ours.name]);
        theirsMs.push(times[theirs.name]);
      }
      return { oursArgmax, theirsArgmax, maxAbsDiff, oursMs, theirsMs };
    } finally {
      ours.dispose();
      theirs.dispose();
    }
  },
};
window.benchReady = true;
