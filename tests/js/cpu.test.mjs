// node --test tests/js/*.test.mjs: the CPU fallback's WebAssembly kernels (site_src/cpu.js + kernels.wat)
// against a plain loop-nest forward pass, on random weights of awkward shapes: partial blocks
// of 16 channels or outputs, odd sides for the max-pool, a 5x5 kernel, a 1x1 last plane.
//
// kernels.wat is assembled by the site build, so this needs the runtime as it ships: the
// directory MNIST_WEBGPU_RUNTIME names, or else one written here by this checkout's
// mnist_webgpu.site.assets.write_runtime, run by $PYTHON or the project's .venv/bin/python.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The runtime as it ships, assembled once for this file unless MNIST_WEBGPU_RUNTIME gives one. */
function runtime() {
  if (process.env.MNIST_WEBGPU_RUNTIME) return process.env.MNIST_WEBGPU_RUNTIME;
  const dir = mkdtempSync(path.join(os.tmpdir(), "mnist-webgpu-runtime-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const venv = path.join(ROOT, ".venv", "bin", "python");
  const python = process.env.PYTHON || (existsSync(venv) ? venv : "python3");
  const script =
    "import sys; from pathlib import Path; from mnist_webgpu.site.assets import write_runtime; " +
    "write_runtime(Path(sys.argv[1]), Path(sys.argv[2]))";
  execFileSync(python, ["-c", script, path.join(ROOT, "site_src"), dir], {
    env: { ...process.env, PYTHONPATH: path.join(ROOT, "src") },
    stdio: ["ignore", "inherit", "inherit"],
  });
  return dir;
}

const RUNTIME = runtime();
const NORMALIZE = { mean: 0.1307, std: 0.3081 };

// node's fetch() cannot read file: URLs, which is where cpu.js finds kernels.wasm here
globalThis.fetch = async (url) => new Response(await readFile(new URL(url)));

async function cpu() {
  return import(pathToFileURL(path.join(RUNTIME, "cpu.js")).href);
}

/** A deterministic uniform generator in [-1, 1) (mulberry32). */
function random(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

/** manifest + weights for `shapes` ({name: shape}), weights scaled by 1/sqrt(fan-in) like an init. */
function model(arch, shapes, seed) {
  const next = random(seed);
  const weights = new Map();
  for (const [name, shape] of Object.entries(shapes)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? count / shape[0] : 16;
    weights.set(name, Float32Array.from({ length: count }, () => next() / Math.sqrt(fanIn)));
  }
  // listed backwards: the layers' order must come from the kernels, as the exporter's does
  const entries = Object.fromEntries(Object.entries(shapes).reverse().map(([n, shape]) => [n, { shape }]));
  const manifest = { name: `test-${arch}`, model: { arch, normalize: NORMALIZE }, weights: entries };
  manifest.kernels = kernelsFor(Object.keys(shapes));
  return { manifest, weights };
}

/** Kernels in dispatch order as the exporter lists them: one per layer, binding its weight and bias. */
function kernelsFor(names) {
  const owners = [...new Set(names.map((n) => n.replace(/\.(weight|bias)$/, "")))];
  return owners.map((owner, i) => ({
    name: `k${i}`,
    bindings: [
      { binding: 1, buffer: `t${i}`, kind: "intermediate" },
      ...names
        .filter((n) => n.startsWith(`${owner}.`))
        .map((n, j) => ({ binding: j + 2, buffer: `weight:${n}`, kind: "weight", name: n })),
    ],
  }));
}

function mlpShapes(widths) {
  const sizes = [784, ...widths, 10];
  const shapes = {};
  sizes.slice(1).forEach((n, i) => {
    shapes[`layers.${i}.weight`] = [n, sizes[i]];
    shapes[`layers.${i}.bias`] = [n];
  });
  return shapes;
}

function cnnShapes(widths, size = 3, hidden = 128) {
  const shapes = {};
  [1, ...widths].slice(0, -1).forEach((c, i) => {
    shapes[`convs.${i}.weight`] = [widths[i], c, size, size];
    shapes[`convs.${i}.bias`] = [widths[i]];
  });
  const side = 28 >> widths.length;
  shapes["fc1.weight"] = [hidden, widths.at(-1) * side * side];
  shapes["fc1.bias"] = [hidden];
  shapes["fc2.weight"] = [10, hidden];
  shapes["fc2.bias"] = [10];
  return shapes;
}

// --- the reference: one plain loop nest per layer, in double precision ----------------------

function dense(x, w, b, relu) {
  const outputs = b.length;
  const inputs = x.length;
  return Array.from({ length: outputs }, (_, o) => {
    let sum = b[o];
    for (let i = 0; i < inputs; i++) sum += w[o * inputs + i] * x[i];
    return relu ? Math.max(sum, 0) : sum;
  });
}

/** (C, side, side) -> (K, side, side), zero "same" padding, then ReLU. */
function convRelu(x, channels, side, w, b, size) {
  const kernels = b.length;
  const pad = size >> 1;
  const out = new Array(kernels * side * side).fill(0);
  for (let k = 0; k < kernels; k++)
    for (let y = 0; y < side; y++)
      for (let xx = 0; xx < side; xx++) {
        let sum = b[k];
        for (let c = 0; c < channels; c++)
          for (let dy = 0; dy < size; dy++)
            for (let dx = 0; dx < size; dx++) {
              const iy = y + dy - pad;
              const ix = xx + dx - pad;
              if (iy >= 0 && iy < side && ix >= 0 && ix < side) {
                sum += w[((k * channels + c) * size + dy) * size + dx] * x[(c * side + iy) * side + ix];
              }
            }
        out[(k * side + y) * side + xx] = Math.max(sum, 0);
      }
  return out;
}

/** 2x2 max-pool, stride 2, an odd last row and column dropped. */
function pool(x, channels, side) {
  const half = side >> 1;
  const out = [];
  for (let c = 0; c < channels; c++)
    for (let y = 0; y < half; y++)
      for (let xx = 0; xx < half; xx++) {
        const at = (c * side + 2 * y) * side + 2 * xx;
        out.push(Math.max(x[at], x[at + 1], x[at + side], x[at + side + 1]));
      }
  return out;
}

function reference({ manifest, weights }, pixels) {
  const g = (name) => weights.get(name);
  let x = Array.from(pixels, (p) => (p - NORMALIZE.mean) / NORMALIZE.std);
  if (manifest.model.arch === "mlp") {
    for (let i = 0; g(`layers.${i}.weight`); i++) {
      x = dense(x, g(`layers.${i}.weight`), g(`layers.${i}.bias`), g(`layers.${i + 1}.weight`) !== undefined);
    }
    return x;
  }
  let side = 28;
  let channels = 1;
  for (let i = 0; g(`convs.${i}.weight`); i++) {
    const size = manifest.weights[`convs.${i}.weight`].shape[2];
    const kernels = g(`convs.${i}.bias`).length;
    x = pool(convRelu(x, channels, side, g(`convs.${i}.weight`), g(`convs.${i}.bias`), size), kernels, side);
    channels = kernels;
    side >>= 1;
  }
  return dense(dense(x, g("fc1.weight"), g("fc1.bias"), true), g("fc2.weight"), g("fc2.bias"), false);
}

function images(count, seed) {
  const next = random(seed);
  // digit-like: mostly zeros, some ink in [0, 1]
  return Array.from({ length: count }, () => Float32Array.from({ length: 784 }, () => Math.max(0, next()) ** 2));
}

async function check(m, seed) {
  const { createCPUBackend } = await cpu();
  const backend = await createCPUBackend(m.manifest, m.weights);
  for (const pixels of images(4, seed)) {
    const got = await backend.run(pixels);
    const want = reference(m, pixels);
    assert.equal(got.length, 10);
    const worst = Math.max(...want.map((v, i) => Math.abs(v - got[i])));
    assert.ok(worst <= 1e-4, `max |wasm - reference| = ${worst}`);
  }
  backend.dispose();
}

test("without WebAssembly it fails with a clear error, then works once it is back", async () => {
  const { createCPUBackend } = await cpu();
  const saved = globalThis.WebAssembly;
  const m = model("mlp", mlpShapes([16]), 1);
  delete globalThis.WebAssembly;
  try {
    await assert.rejects(createCPUBackend(m.manifest, m.weights), /the CPU fallback needs WebAssembly/);
  } finally {
    globalThis.WebAssembly = saved;
  }
  await check(m, 2);
});

test("MLP with partial blocks of outputs (33, 7)", () => check(model("mlp", mlpShapes([33, 7]), 3), 4));

test("MLP 784-512-512-10", () => check(model("mlp", mlpShapes([512, 512]), 5), 6));

test("CNN 16-32 (the default)", () => check(model("cnn", cnnShapes([16, 32]), 7), 8));

test("CNN with partial channel blocks and odd sides (6, 20, 3: 28-14-7-3)", () =>
  check(model("cnn", cnnShapes([6, 20, 3], 3, 24), 9), 10),
);

test("CNN down to a 1x1 plane (four blocks)", () =>
  check(model("cnn", cnnShapes([4, 4, 4, 17]), 11), 12),
);

test("CNN with a 5x5 kernel", () => check(model("cnn", cnnShapes([8, 12], 5, 32), 13), 14));

test("refuses an even kernel and an unknown architecture", async () => {
  const { createCPUBackend } = await cpu();
  const even = model("cnn", cnnShapes([4], 2), 15);
  await assert.rejects(createCPUBackend(even.manifest, even.weights), /convs.0 is not an odd square kernel/);
  const rnn = { manifest: { name: "x", model: { arch: "rnn" }, weights: {}, kernels: [] }, weights: new Map() };
  await assert.rejects(createCPUBackend(rnn.manifest, rnn.weights), /no CPU fallback for architecture rnn/);
});

test("reads the layers from the manifest, whatever they are named, and refuses what it cannot run", async () => {
  const { createCPUBackend, layersOf } = await cpu();
  const m = model("cnn", cnnShapes([8, 12]), 16);
  assert.deepEqual(
    layersOf(m.manifest).map((l) => [l.name, l.kind]),
    [["convs.0", "conv"], ["convs.1", "conv"], ["fc1", "dense"], ["fc2", "dense"]],
  );
  // the same network under other state-dict names predicts the same
  const renamed = (name) => name.replace("convs.", "features.").replace("fc", "head.");
  const shapes = Object.fromEntries(Object.entries(cnnShapes([8, 12])).map(([n, s]) => [renamed(n), s]));
  const other = model("cnn", shapes, 16);
  const pixels = images(1, 17)[0];
  const a = await (await createCPUBackend(m.manifest, m.weights)).run(pixels);
  const b = await (await createCPUBackend(other.manifest, other.weights)).run(pixels);
  assert.deepEqual(Array.from(b), Array.from(a));
  // a cnn manifest without convs, a dense layer before a conv, a weight no kernel reads
  const flat = model("cnn", mlpShapes([16]), 18);
  await assert.rejects(createCPUBackend(flat.manifest, flat.weights), /a cnn with 0 conv layers/);
  const mixed = model("cnn", cnnShapes([4]), 19);
  mixed.manifest.kernels.reverse();
  await assert.rejects(createCPUBackend(mixed.manifest, mixed.weights), /runs convs then dense layers/);
  const unread = model("mlp", mlpShapes([16]), 20);
  unread.manifest.kernels.pop();
  await assert.rejects(createCPUBackend(unread.manifest, unread.weights), /no kernel reads weight layers.1/);
});
