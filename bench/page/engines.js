// The two engines behind one interface, for compare.js and cold.js.
//
// Ours: loadModel() from the runtime the site ships. Theirs: ONNX Runtime Web, the build a
// user would import for that execution provider (onnxruntime-web/webgpu for "webgpu",
// onnxruntime-web/wasm for "wasm"), its .mjs and .wasm files served from ../ort/.
import { loadModel } from "../runtime/runtime.js";

const ORT_BUILDS = { webgpu: "../ort/ort.webgpu.min.mjs", wasm: "../ort/ort.wasm.min.mjs" };

export async function importOrt(ep) {
  if (!(ep in ORT_BUILDS)) throw new Error(`ONNX Runtime Web execution provider must be webgpu or wasm, got ${ep}`);
  const ort = await import(ORT_BUILDS[ep]);
  ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;
  // our CPU fallback is one thread of WebAssembly; a page without cross-origin isolation
  // (the usual static site) gets one wasm thread too, so ask for exactly that (the bench
  // pages are isolated only for performance.now()'s finer steps)
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  return ort;
}

/** { name, predict(pixels) -> Float32Array logits, dispose() } for our runtime. */
export async function loadOurs(manifestUrl, backend, form) {
  const model = await loadModel(manifestUrl, { backend, form });
  if (model.backend !== backend) throw new Error(`our runtime ran on ${model.backend}, not ${backend}`);
  return {
    name: `ours-${backend}`,
    async predict(pixels) {
      return (await model.predict(pixels)).logits;
    },
    dispose: () => model.dispose(),
  };
}

/** The same interface over an ONNX Runtime Web session. */
export async function loadOrt(onnxUrl, ep) {
  const ort = await importOrt(ep);
  const session = await ort.InferenceSession.create(onnxUrl, {
    executionProviders: [ep],
    graphOptimizationLevel: "all",
  });
  const input = session.inputNames[0];
  const output = session.outputNames[0];
  return {
    name: `ort-${ep}`,
    async predict(pixels) {
      const feeds = { [input]: new ort.Tensor("float32", Float32Array.from(pixels), [1, 1, 28, 28]) };
      const result = await session.run(feeds);
      return Float32Array.from(await result[output].getData());
    },
    dispose: () => session.release(),
  };
}

export function argmax(v) {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
