// node --test tests/js/*.test.mjs: site_src/cpu.js, the generic runner of a model's generated
// CPU module, on a module export/wasm.py builds here from two small C kernels as tinygrad's C
// renderer writes them (y = x * w + b, then z = relu(y)), with the weights, input and output
// at the offsets its manifest record gives. Parity of real models with tinygrad is the browser
// tests' (tests/browser/test_browser_parity.py).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { createCPUBackend } from "../../site_src/cpu.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const N = 8;

const SCRIPT = `
import json, sys
from pathlib import Path
from mnist_webgpu.core import records
from mnist_webgpu.export import wasm
N = ${N}
axpb = """void r_8(float* restrict data0_8, float* restrict data1_8, float* restrict data2_8, float* restrict data3_8) {
  for (int i = 0; i < 8; i++) { *(data0_8+i) = (*(data1_8+i)) * (*(data2_8+i)) + (*(data3_8+i)); }
}"""
relu = """void r_8(float* restrict data0_8, float* restrict data1_8) {
  for (int i = 0; i < 8; i++) { float v = *(data1_8+i); *(data0_8+i) = (0.0f<v)?v:0.0f; }
}"""
buffers = [
    records.Buffer(id="input", kind="input", bytes=4 * N),
    records.Buffer(id="weight:w", kind="weight", bytes=4 * N, name="w"),
    records.Buffer(id="weight:b", kind="weight", bytes=4 * N, name="b"),
    records.Buffer(id="t0", kind="intermediate", bytes=4 * N),
    records.Buffer(id="output", kind="output", bytes=4 * N),
]
kernels = [wasm.CKernel("r_8", axpb, ["t0", "input", "weight:w", "weight:b"]), wasm.CKernel("r_8", relu, ["output", "t0"])]
cpu, blob = wasm.build(kernels, buffers, "model 'test'")
out = Path(sys.argv[1])
(out / cpu.file).write_bytes(blob)
manifest = {"name": "test", "input": {"shape": [1, N], "buffer": "input"}, "output": {"shape": [1, N], "buffer": "output"},
            "buffers": records.plain(buffers), "cpu": records.plain(cpu)}
(out / "manifest.json").write_text(json.dumps(manifest))
`;

/** The module and its manifest, built once for this file by this checkout's export/wasm.py. */
function build() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mnist-webgpu-cpu-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const venv = path.join(ROOT, ".venv", "bin", "python");
  const python = process.env.PYTHON || (existsSync(venv) ? venv : "python3");
  execFileSync(python, ["-c", SCRIPT, dir], {
    env: { ...process.env, PYTHONPATH: path.join(ROOT, "src") },
    stdio: ["ignore", "inherit", "inherit"],
  });
  return dir;
}

const DIR = build();
const MANIFEST = JSON.parse(readFileSync(path.join(DIR, "manifest.json"), "utf-8"));
const URL_ = pathToFileURL(path.join(DIR, MANIFEST.cpu.file));

// node's fetch() cannot read file: URLs, which is where the module is here
globalThis.fetch = async (url) => new Response(await readFile(new URL(url)));

const weights = () =>
  new Map([
    ["w", Float32Array.from({ length: N }, (_, i) => i - 3)],
    ["b", Float32Array.from({ length: N }, (_, i) => 0.5 * i)],
  ]);

test("runs the kernels in order on the weights and pixels at the manifest's offsets", async () => {
  const backend = await createCPUBackend(MANIFEST, weights(), { url: URL_ });
  assert.equal(backend.name, "cpu");
  const x = Float32Array.from({ length: N }, (_, i) => 1 + i);
  const got = await backend.run(x);
  const want = Array.from(x, (v, i) => Math.max(0, v * (i - 3) + 0.5 * i));
  assert.deepEqual(Array.from(got), want);
  // a second run sees only its own pixels
  const again = await backend.run(new Float32Array(N));
  assert.deepEqual(Array.from(again), Array.from({ length: N }, (_, i) => 0.5 * i));
  // two models (here the same one twice) each get their own instance and weights
  const other = weights();
  other.get("b").fill(-100);
  const second = await createCPUBackend(MANIFEST, other, { url: URL_ });
  assert.deepEqual(Array.from(await second.run(x)), Array(N).fill(0));
  assert.deepEqual(Array.from(await backend.run(x)), want);
});

test("refuses a manifest whose weights or offsets do not fit the module", async () => {
  const missing = new Map([["w", new Float32Array(N)]]);
  await assert.rejects(createCPUBackend(MANIFEST, missing, { url: URL_ }), /test: no weights for b/);
  const off = structuredClone(MANIFEST);
  off.cpu.offsets.output = off.cpu.arena_bytes;
  await assert.rejects(createCPUBackend(off, weights(), { url: URL_ }), /no place for buffer output/);
  const none = structuredClone(MANIFEST);
  delete none.cpu;
  await assert.rejects(createCPUBackend(none, weights(), { url: URL_ }), /names no CPU module/);
});

test("without WebAssembly it fails with a clear error, then works once it is back", async () => {
  const saved = globalThis.WebAssembly;
  const url = new URL(`${URL_.href}?again`); // not the module compiled above
  globalThis.WebAssembly = undefined;
  try {
    await assert.rejects(createCPUBackend(MANIFEST, weights(), { url }), /the CPU fallback needs WebAssembly/);
  } finally {
    globalThis.WebAssembly = saved;
  }
  const backend = await createCPUBackend(MANIFEST, weights(), { url });
  assert.equal((await backend.run(new Float32Array(N))).length, N);
});
