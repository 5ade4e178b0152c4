// The app: wires the pad, the preprocessing and the models together.
// Talks to the model runtime only through loadModel / predict / dispose; when predictions
// run is scheduler.js's business.

import { Pad } from "./draw.js";
import { preprocessStrokes, SIZE } from "./preprocess.js";
import { loadModel } from "./runtime.js";
import { createScheduler } from "./scheduler.js";
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
  backendWhy: $("backend-why"),
  status: $("status"),
  retry: $("retry"),
  notice: $("notice"),
  announce: $("announce"),
  empty: $("pad-empty"),
  preview: $("preview").getContext("2d"),
  undo: $("undo"),
  redo: $("redo"),
  pen: $("tool-pen"),
  eraser: $("tool-eraser"),
  clear: $("clear"),
  probs: Array.from({ length: 10 }, (_, d) => {
    const li = $(`prob-${d}`);
    return { li, bar: li.querySelector(".prob-bar"), text: li.querySelector(".prob-value") };
  }),
};
const BACKEND_NAMES = { webgpu: "WebGPU", cpu: "CPU" };
const params = new URLSearchParams(location.search);
// "fastest": the runtime picks (the CPU path over a software GPU, else a warm-up race)
let backendChoice = ["webgpu", "cpu"].includes(params.get("backend")) ? params.get("backend") : "fastest";

/** The address says what is on screen, so a reload or a shared link opens the same thing. */
function setParam(key, value) {
  if (value === null) params.delete(key);
  else params.set(key, value);
  const query = params.size ? `?${params}` : "";
  history.replaceState(history.state, "", `${location.pathname}${query}${location.hash}`);
}

// --- which model: ?model=<name>, else the last choice, else the default ----------------
const STORE_KEY = "mnist-webgpu:model";
const entryOf = (name) => config.models.find((m) => m.name === name);
const labelOf = (name) => entryOf(name)?.label ?? name;

function stored() {
  try {
    return localStorage.getItem(STORE_KEY);
  } catch {
    return null; // storage off (a privacy setting): the choice just does not persist
  }
}

function remember(name) {
  try {
    localStorage.setItem(STORE_KEY, name);
  } catch {
    // as above
  }
  setParam("model", name);
}

function initialModel() {
  const asked = params.get("model");
  if (asked === null) return entryOf(stored()) ? stored() : config.default;
  if (entryOf(asked)) return asked;
  ui.notice.textContent = `There is no model named “${asked}” here: showing the ${labelOf(config.default)} instead.`;
  ui.notice.hidden = false;
  return config.default;
}

// --- models: loaded once, kept in a small LRU cache ------------------------------------
// Switching back and forth is instant and never re-downloads; the few models a site has
// fit easily (each is a few MB of GPU buffers). Beyond MAX_MODELS the least recently used
// one is disposed, once no prediction is running on it.
const MAX_MODELS = 3;
const cache = new Map(); // name -> Promise<model>
let currentName = initialModel();
let currentModel = null;
// "loading" | "ready" | "failed" (did not download) | "broken" (its files or outputs cannot be
// trusted: the runtime's BrokenModelError): what the verdict says without a digit
let loadState = "loading";

function manifestUrl(name) {
  return new URL(entryOf(name).manifest, document.baseURI).href;
}

function getModel(name) {
  if (cache.has(name)) {
    const p = cache.get(name);
    cache.delete(name);
    cache.set(name, p); // most recently used last
    return p;
  }
  const p = loadModel(manifestUrl(name), { backend: backendChoice });
  cache.set(name, p);
  p.catch(() => cache.delete(name)); // a failed load is retried by the next attempt
  while (cache.size > MAX_MODELS) {
    const [oldest, old] = cache.entries().next().value;
    cache.delete(oldest);
    old.then(async (m) => {
      await scheduler.idle();
      m.dispose();
    }, () => {});
  }
  return p;
}

async function selectModel(name) {
  currentName = name;
  currentModel = null;
  loadState = "loading";
  root.dataset.ready = "false";
  ui.backend.textContent = "loading…";
  ui.backendWhy.textContent = "";
  ui.retry.hidden = true;
  setStatus("");
  // the old model's answer goes at once: it must never show under the new model's name
  scheduler.forget();
  showEmpty();
  predictNow(); // keeps the preview in step; nothing runs until the model is here
  let model;
  try {
    model = await getModel(name);
  } catch (err) {
    if (name === currentName) unusable(name, err);
    return;
  }
  if (name !== currentName) return; // the user moved on while it loaded
  currentModel = model;
  loadState = "ready";
  showBackend(model);
  root.dataset.ready = "true";
  setTimeout(keepOffline, 0);
  predictNow(); // predict the ink already on the pad with the new model at once
}

// No answer from this model until a retry (the button, or the next stroke) loads it afresh.
function unusable(name, err) {
  const broken = err?.name === "BrokenModelError";
  loadState = broken ? "broken" : "failed";
  if (broken) {
    const p = cache.get(name);
    cache.delete(name); // a retry downloads it again, whether it loaded or not
    p?.then((m) => m.dispose(), () => {});
  }
  currentModel = null;
  root.dataset.ready = "false";
  ui.backend.textContent = "unavailable";
  const why = broken ? `The ${labelOf(name)} model is broken` : `Could not load the ${labelOf(name)} model`;
  setStatus(`${why}: ${err?.message || err}`, true);
  ui.retry.hidden = false;
  scheduler.forget();
  showEmpty();
}

function showBackend(model) {
  const name = BACKEND_NAMES[model.backend] || model.backend;
  ui.backend.textContent = name;
  root.dataset.backend = model.backend;
  ui.backendWhy.textContent = model.backendReason ? `On ${name === "CPU" ? "the CPU" : name}: ${model.backendReason}.` : "";
}

// A backend switch starts every model again on the new one (a few ms to a second each).
const choices = Array.from(document.querySelectorAll("[data-backend-choice]"));
function showChoice() {
  for (const b of choices) b.setAttribute("aria-pressed", String(b.dataset.backendChoice === backendChoice));
}
for (const button of choices) {
  button.addEventListener("click", () => {
    if (button.dataset.backendChoice === backendChoice) return;
    backendChoice = button.dataset.backendChoice;
    showChoice();
    setParam("backend", backendChoice === "fastest" ? null : backendChoice);
    for (const p of cache.values()) {
      p.then(async (m) => {
        await scheduler.idle();
        m.dispose();
      }, () => {});
    }
    cache.clear();
    selectModel(currentName);
  });
}
showChoice();

// Offline: sw.js caches the app and the default model for the next visit. Registered once a
// model is ready, so that its downloads never hold up the first prediction.
let offlineAsked = false;
function keepOffline() {
  if (offlineAsked || !("serviceWorker" in navigator)) return;
  offlineAsked = true;
  const scope = new URL("./", document.baseURI).href;
  navigator.serviceWorker
    .register(new URL("sw.js", scope).href, { scope })
    .then(() => navigator.serviceWorker.ready)
    .then(() => {
      root.dataset.offline = "ready";
    })
    .catch(() => {
      root.dataset.offline = "unavailable"; // private browsing, a file: URL: the app works online
    });
}

// --- predictions: when they run is scheduler.js's business ------------------------------
let preparedExtent = 0; // the drawing's size (pad fractions) behind the prediction in flight
const scheduler = createScheduler({
  target: () => ({ version: pad.version, model: currentModel, blank: pad.isBlank }),
  prepare() {
    const { pixels, empty, extent } = preprocessStrokes(pad.visibleStrokes());
    preparedExtent = extent;
    drawPreview(pixels);
    ui.empty.hidden = !pad.isBlank;
    if (!empty) return pixels;
    showEmpty();
    return null;
  },
  predict: (model, pixels) => model.predict(pixels),
  show(result) {
    showResult(result);
    const { notDigit, threshold } = result; // the rule of the model that answered
    showVerdict(ui, root, judge({ extent: preparedExtent, notDigit, threshold }));
  },
  fail(err, model) {
    if (err?.name !== "BrokenModelError") setStatus(`Prediction failed: ${err?.message || err}`, true);
    else if (model === currentModel) unusable(currentName, err);
    else {
      cache.delete(model.name); // no longer on screen: loaded afresh if chosen again
      model.dispose();
    }
  },
  requestFrame: (callback) => requestAnimationFrame(callback),
  settle(settled) {
    // data-settled="true" once what is shown belongs to the current drawing: a stable hook
    // for tests and benchmarks that draw faster than a person
    root.dataset.settled = String(settled);
    if (settled) announce();
  },
});
const predictNow = () => scheduler.now();

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
  if (backend && backend !== root.dataset.backend) showBackend(currentModel); // it moved after a device loss
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

// No digit on screen: say why (no ink yet, the model still downloading, or it failed).
function showEmpty() {
  const waiting = {
    loading: `Loading the ${labelOf(currentName)} model…`,
    failed: `The ${labelOf(currentName)} model did not load`,
    broken: `The ${labelOf(currentName)} model is broken`,
    ready: "Waiting for a drawing",
  };
  ui.prediction.textContent = "";
  ui.label.textContent = waiting[loadState];
  ui.confidence.textContent = "";
  ui.latency.textContent = "–";
  ui.probs.forEach(({ li, bar, text }, d) => {
    li.dataset.value = "0";
    li.classList.remove("top");
    li.setAttribute("aria-label", `${d}: 0%`);
    bar.style.transform = "scaleY(0)";
    text.textContent = "0%";
  });
  root.dataset.state = loadState === "ready" ? "empty" : loadState;
  root.dataset.declined = "false";
}

// The screen reader hears the answer once per finished stroke, not every live update while
// the pen moves (the verdict itself is not a live region).
let announced = -1;
function announce() {
  if (pad.current || announced === pad.version) return;
  if (!["predicted", "declined"].includes(root.dataset.state)) return;
  announced = pad.version;
  const parts = [ui.label.textContent, ui.prediction.textContent, ui.confidence.textContent];
  ui.announce.textContent = parts.filter(Boolean).join(" ");
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
const canvas = $("pad");
const pad = new Pad(canvas, {
  onChange: () => {
    ui.undo.disabled = !pad.canUndo;
    ui.redo.disabled = !pad.canRedo;
    scheduler.frame();
  },
  onStrokeEnd: () => {
    if (["failed", "broken"].includes(loadState)) selectModel(currentName); // a new stroke retries the download
    else predictNow();
  },
});
// the pad cancels pointerdown (no text selection, no scrolling), which also keeps focus where
// it was: take it, so that a shortcut typed after drawing never lands in the model dropdown
canvas.addEventListener("pointerdown", () => canvas.focus({ preventScroll: true }));

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

const actions = {
  pen: () => setTool("pen"),
  eraser: () => setTool("eraser"),
  clear: () => pad.clear(),
  undo: () => pad.undo(),
  redo: () => pad.redo(),
};
function act(name) {
  actions[name]();
  if (!["pen", "eraser"].includes(name)) predictNow();
}

ui.pen.addEventListener("click", () => act("pen"));
ui.eraser.addEventListener("click", () => act("eraser"));
ui.clear.addEventListener("click", () => act("clear"));
ui.undo.addEventListener("click", () => act("undo"));
ui.redo.addEventListener("click", () => act("redo"));
ui.retry.addEventListener("click", () => selectModel(currentName));
select.addEventListener("change", () => {
  remember(select.value);
  selectModel(select.value);
});

// A few digits drawn as pen strokes (pad coordinates in [0,1]): the app works without dragging.
const ring = (cx, cy, rx, ry, n = 28) =>
  Array.from({ length: n + 1 }, (_, i) => [cx + rx * Math.sin((2 * Math.PI * i) / n), cy - ry * Math.cos((2 * Math.PI * i) / n)]);
const SAMPLES = {
  0: [ring(0.5, 0.5, 0.2, 0.33)],
  1: [[[0.4, 0.24], [0.52, 0.14], [0.52, 0.86]]],
  4: [[[0.6, 0.86], [0.6, 0.14], [0.26, 0.6], [0.76, 0.6]]],
  7: [[[0.28, 0.18], [0.72, 0.18], [0.44, 0.86]]],
};
for (const button of document.querySelectorAll("[data-sample]")) {
  button.addEventListener("click", () => {
    pad.clear();
    for (const stroke of SAMPLES[button.dataset.sample]) pad.addStroke(stroke.map(([x, y]) => [x, y]));
  });
}

// Shortcuts work wherever focus is, except where typing letters means text.
function typesText(t) {
  if (!(t instanceof HTMLElement)) return false;
  if (t.isContentEditable || t.tagName === "TEXTAREA") return true;
  const notText = ["button", "checkbox", "radio", "range", "submit", "reset", "color", "file", "image"];
  return t.tagName === "INPUT" && !notText.includes(t.type);
}

function shortcut(e) {
  const key = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && !e.altKey) {
    if (key === "z") return e.shiftKey ? "redo" : "undo";
    if (key === "y" && !e.shiftKey) return "redo";
    return null;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return null;
  return { p: "pen", e: "eraser", c: "clear" }[key] ?? null;
}

// capture phase, before the focused control: a <select> would take P, E or C as type-to-select
window.addEventListener(
  "keydown",
  (e) => {
    if (e.isComposing || typesText(e.target)) return;
    const name = shortcut(e);
    if (!name) return;
    e.preventDefault();
    e.stopPropagation();
    act(name);
  },
  { capture: true },
);

select.value = currentName;
setTool("pen");
showEmpty();
drawPreview(new Float32Array(SIZE * SIZE));
selectModel(currentName);
