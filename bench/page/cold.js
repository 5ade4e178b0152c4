// Navigation to the first prediction on a fresh page: load the engine and the model, predict once.
// performance.now() counts from navigation start; bytes are the bodies of every resource the
// engine and the model fetched (this harness page's own files excluded).
import { loadOrt, loadOurs } from "./engines.js";

function digitOne() {
  const pixels = new Float32Array(784);
  for (let y = 5; y < 23; y++) for (let x = 13; x < 16; x++) pixels[y * 28 + x] = 1;
  return pixels;
}

async function run() {
  const q = new URLSearchParams(location.search);
  const model = q.get("model");
  const engine =
    q.get("engine") === "ours"
      ? await loadOurs(`../models/${model}/manifest.json`, q.get("backend"), q.get("form") || undefined)
      : await loadOrt(`../models/${model}/model.onnx`, q.get("backend"));
  await engine.predict(digitOne());
  const firstMs = performance.now();
  engine.dispose();
  const fetched = performance
    .getEntriesByType("resource")
    .filter((e) => e.responseEnd <= firstMs && !new URL(e.name).pathname.startsWith("/bench/"))
    .map((e) => ({ url: new URL(e.name).pathname, bytes: e.encodedBodySize }));
  return { firstMs, bytes: fetched.reduce((a, e) => a + e.bytes, 0), fetched };
}

window.coldResult = run().catch((err) => ({ error: String(err?.message || err) }));
