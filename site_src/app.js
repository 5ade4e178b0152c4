// The app: wires the pad, the preprocessing and the models together.
// Talks to the model runtime only through loadModel / predict / dispose.

import { Pad } from "./draw.js";
import { preprocessStrokes, SIZE } from "./preprocess.js";
import { loadModel } from "./runtime.js";
import { judge, showVerdict } from "./verdict.js";

const $ = (id) => document.getElementById(id);
const root = $("app");
const config = JSON.parse($("models").textContent);
const select = $("model-select");
const ui = {
  prediction: $("prediction"),
  label: $("verdict-label"),
  confidence: $("confidence"),
  latency: $("latency"),
  backend: $("backend"),
  status: $("status"),
  empty: $("pad-empty"),
  preview: $("preview").getContext("2d"),
  undo: $("undo"),
  pen: $("tool-pen"),
  eraser: $("tool-eraser"),
  clear: $("clear"),
  probs: Array.from({ length: 10 }, (_, d) => {
    const li = $(`prob-${d}`);
    return { li, bar: li.querySelector(".prob-bar"), text: li.querySelector(".prob-value") };
  }),
};
const BACKEND_NAMES = { webgpu: "WebGPU", cpu: "CPU" };
const requested = new URLSearchParams(location.search).get("backend");
const BACKEND = ["webgpu", "cpu"].includes(requested) ? requested : "auto";

// --- models: loaded once, kept in a small LRU cache ------------------------------------
// Switching back and forth is instant and never re-downloads; the few models a site has
// fit easily (each is a few MB of GPU buffers). Beyond MAX_MODELS the least recently used
// one is disposed, once no prediction is running on it.
const MAX_MODELS = 3;
const cache = new Map(); // name -> Promise<model>
let currentName = select.value || config.default;
let currentModel = null;

function manifestUrl(name) {
  const entry = config.models.find((m) => m.name === name);
  return new URL(entry.manifest, document.baseURI).href;
}

function getModel(name) {
  if (cache.has(name)) {
    const p = cache.get(name);
    cache.delete(name);
    cache.set(name, p); // most recently used last
    return p;
  }
  const p = loadModel(manifestUrl(name), { backend: BACKEND });
  cache.set(name, p);
  p.catch(() => cache.delete(name)); // a failed load may be retried later
  while (cache.size > MAX_MODELS) {
    const [oldest, old] = cache.entries().next().value;
    cache.delete(oldest);
    old.then(async (m) => {
      await idle;
      m.dispose();
    }, () => {});
  }
  return p;
}

async function selectModel(name) {
  currentName = name;
  currentModel = null;
  root.dataset.ready = "false";
  ui.backend.textContent = "loading…";
  setStatus("");
  let model;
  try {
    model = await getModel(name);
  } catch (err) {
    if (name === currentName) {
      ui.backend.textContent = "unavailable";
      setStatus(`Could not load the ${name} model: ${err?.message || err}`, true);
    }
    return;
  }
  if (name !== currentName) return; // the user moved on while it loaded
  currentModel = model;
  ui.backend.textContent = BACKEND_NAMES[model.backend] || model.backend;
  root.dataset.backend = model.backend;
  if (model.backend === "cpu" && BACKEND === "auto") {
    setStatus("WebGPU is not available in this browser: running on the CPU instead.");
  }
  root.dataset.ready = "true";
  predictNow(); // re-predict the current drawing with the new model at once
}

// --- predictions: at most one per frame, never two in flight -----------------------------
let inFlight = null; // { version, model } of the prediction running now
let shown = null; // { version, model } of the prediction on screen
// a request made while one runs: "now" (stroke end, clear, new model) runs as soon as it
// finishes, "frame" (live drawing) waits for the next animation frame
let pending = null;
let frameRequested = false;
let idle = Promise.resolve();

// data-settled="true" once the shown prediction (or emptiness) belongs to the current drawing:
// a stable hook for tests and benchmarks that draw faster than a person
function settle(settled) {
  root.dataset.settled = String(settled);
}

function schedule() {
  settle(false);
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    predictNow("frame");
  });
}

async function predictNow(when = "now") {
  settle(false);
  if (inFlight) {
    // the running one already answers for this drawing and model: its result is the final one
    if (inFlight.version === pad.version && inFlight.model === currentModel) return;
    if (pending !== "now") pending = when;
    return;
  }
  if (shown?.version === pad.version && shown.model === currentModel) {
    settle(!frameRequested); // nothing changed since the prediction on screen
    return;
  }
  const { pixels, empty, extent } = preprocessStrokes(pad.visibleStrokes());
  drawPreview(pixels);
  ui.empty.hidden = !pad.isBlank;
  if (empty) {
    showEmpty();
    settle(!frameRequested);
    return;
  }
  const model = currentModel;
  if (!model) return; // selectModel predicts once the model is ready
  const version = pad.version;
  inFlight = { version, model };
  let done;
  idle = new Promise((resolve) => (done = resolve));
  try {
    const result = await model.predict(pixels);
    const cleared = pad.version !== version && pad.isBlank;
    if (model === currentModel && !cleared) {
      showResult(result);
      showVerdict(ui, root, judge({ extent }));
      shown = { version, model };
    }
  } catch (err) {
    setStatus(`Prediction failed: ${err?.message || err}`, true);
  } finally {
    inFlight = null;
    done();
    if (pending) {
      const next = pending;
      pending = null;
      if (next === "now") predictNow();
      else schedule();
    } else {
      settle(pad.version === version && !frameRequested);
    }
  }
}

// --- output -------------------------------------------------------------------------
// bar labels: whole percent, short enough for ten columns on a phone; aria labels: one decimal
const shortPct = (p) => (p < 0.005 ? "<1%" : `${Math.round(p * 100)}%`);
const pct = (p) => `${(p * 100).toFixed(1)}%`;

function showResult({ probs, ms, backend }) {
  let top = 0;
  for (let d = 1; d < 10; d++) if (probs[d] > probs[top]) top = d;
  ui.prediction.textContent = String(top);
  ui.label.textContent = probs[top] >= 0.5 ? "Looks like" : "Might be";
  ui.confidence.textContent = `${(probs[top] * 100).toFixed(1)}% sure`;
  ui.latency.textContent = `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  if (backend) ui.backend.textContent = BACKEND_NAMES[backend] || backend;
  ui.probs.forEach(({ li, bar, text }, d) => {
    const p = probs[d];
    li.dataset.value = String(p);
    li.classList.toggle("top", d === top);
    li.setAttribute("aria-label", `${d}: ${pct(p)}`);
    bar.style.transform = `scaleY(${Math.max(0, Math.min(1, p))})`;
    text.textContent = shortPct(p);
  });
  root.dataset.state = "predicted";
}

function showEmpty() {
  ui.prediction.textContent = "";
  ui.label.textContent = "Waiting for a drawing";
  ui.confidence.textContent = "";
  ui.latency.textContent = "–";
  ui.probs.forEach(({ li, bar, text }, d) => {
    li.dataset.value = "0";
    li.classList.remove("top");
    li.setAttribute("aria-label", `${d}: 0%`);
    bar.style.transform = "scaleY(0)";
    text.textContent = "0%";
  });
  root.dataset.state = "empty";
  root.dataset.declined = "false";
}

const previewImage = ui.preview.createImageData(SIZE, SIZE);
function drawPreview(pixels) {
  const d = previewImage.data;
  for (let i = 0; i < pixels.length; i++) {
    const v = Math.round(pixels[i] * 255);
    d[i * 4] = d[i * 4 + 1] = d[i * 4 + 2] = v;
    d[i * 4 + 3] = 255;
  }
  ui.preview.putImageData(previewImage, 0, 0);
}

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
}

// --- tools ---------------------------------------------------------------------------
const pad = new Pad($("pad"), {
  onChange: () => {
    ui.undo.disabled = !pad.canUndo;
    schedule();
  },
  onStrokeEnd: () => predictNow(),
});

function inkColor() {
  return getComputedStyle(root).getPropertyValue("--ink").trim() || "#111";
}
pad.setInkColor(inkColor());
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => pad.setInkColor(inkColor()));

function setTool(tool) {
  pad.setTool(tool);
  ui.pen.setAttribute("aria-pressed", String(tool === "pen"));
  ui.eraser.setAttribute("aria-pressed", String(tool === "eraser"));
}

ui.pen.addEventListener("click", () => setTool("pen"));
ui.eraser.addEventListener("click", () => setTool("eraser"));
ui.clear.addEventListener("click", () => {
  pad.clear();
  predictNow();
});
ui.undo.addEventListener("click", () => {
  pad.undo();
  predictNow();
});
select.addEventListener("change", () => selectModel(select.value));

document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName))) return;
  if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === "z") {
    e.preventDefault();
    pad.undo();
    predictNow();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === "p") setTool("pen");
  else if (key === "e") setTool("eraser");
  else if (key === "c") {
    pad.clear();
    predictNow();
  } else return;
  e.preventDefault();
});

setTool("pen");
showEmpty();
drawPreview(new Float32Array(SIZE * SIZE));
selectModel(currentName);
