// node --test tests/js: the safetensors parser and weight expansion against good and malformed files.
import assert from "node:assert/strict";
import { test } from "node:test";

import { expandWeights, halfToFloat, parseSafetensors, transpose } from "../../site_src/safetensors.js";

/** A safetensors file from a header object and raw data bytes (header padded to 8 like the Python writer). */
function file(header, data = new Uint8Array(0), { lengthOverride } = {}) {
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += " ";
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setUint32(0, lengthOverride ?? head.length, true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out.buffer;
}

const f32 = (values) => new Uint8Array(Float32Array.from(values).buffer);
const good = () => file({ w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] } }, f32([1, 2, 3, 4]));

test("parses a well-formed file", () => {
  const t = parseSafetensors(good(), "good");
  assert.deepEqual(t.get("w").shape, [2, 2]);
  const w = expandWeights(t, { w: { shape: [2, 2] } }, "good").get("w");
  assert.deepEqual(Array.from(w), [1, 2, 3, 4]);
});

test("rejects a truncated file", () => {
  const whole = good();
  assert.throws(() => parseSafetensors(whole.slice(0, 5), "cut"), /cut: 5 bytes is too short/);
  assert.throws(() => parseSafetensors(whole.slice(0, 20), "cut"), /cut: header claims \d+ bytes but the file has only 12/);
  assert.throws(() => parseSafetensors(whole.slice(0, whole.byteLength - 4), "cut"), /w: data_offsets \[0, 16\] fall outside the 12 data bytes/);
});

test("rejects a header length that lies", () => {
  assert.throws(() => parseSafetensors(file({}, new Uint8Array(0), { lengthOverride: 2 ** 31 }), "big"), /implausibly large/);
  assert.throws(() => parseSafetensors(file({ a: 1 }, new Uint8Array(0), { lengthOverride: 3 }), "short"), /header is not valid JSON/);
});

test("rejects a header that lies about sizes", () => {
  const lying = file({ w: { dtype: "F32", shape: [3, 2], data_offsets: [0, 16] } }, f32([1, 2, 3, 4]));
  assert.throws(() => parseSafetensors(lying, "lie"), /w: 16 data bytes for shape \[3,2\] of F32, which needs 24/);
  const backwards = file({ w: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }, f32([1, 2, 3, 4]));
  assert.throws(() => parseSafetensors(backwards, "lie"), /fall outside/);
  const overlap = file(
    { a: { dtype: "F32", shape: [3], data_offsets: [0, 12] }, b: { dtype: "F32", shape: [2], data_offsets: [8, 16] } },
    f32([1, 2, 3, 4]),
  );
  assert.throws(() => parseSafetensors(overlap, "lie"), /b overlaps a/);
});

test("rejects bad dtypes, shapes and JSON", () => {
  const i64 = file({ n: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8));
  assert.throws(() => parseSafetensors(i64, "x"), /n: unsupported dtype "I64"/);
  const negative = file({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, f32([1]));
  assert.throws(() => parseSafetensors(negative, "x"), /shape is not a list of counts/);
  assert.throws(() => parseSafetensors(file([1, 2]), "x"), /not a JSON object/);
  assert.throws(() => parseSafetensors(new Uint8Array(8).buffer.slice(0), "x"), /not valid JSON/);
});

test("checks tensors against the manifest", () => {
  const t = parseSafetensors(good(), "g");
  assert.throws(() => expandWeights(t, { w: { shape: [4] } }, "g"), /g: w has shape \[2,2\], the manifest says \[4\]/);
  assert.throws(() => expandWeights(t, { w: { shape: [2, 2] }, b: { shape: [2] } }, "g"), /g: missing tensor b/);
  assert.throws(() => expandWeights(t, {}, "g"), /g: unexpected tensor w/);
});

test("expands f16 exactly and int8 with per-row scales", () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x7c00), Infinity);
  const halves = new Uint8Array(Uint16Array.from([0x3c00, 0x3800]).buffer); // 1, 0.5
  const q = new Uint8Array(Int8Array.from([127, -127, 1, 0]).buffer);
  const scales = f32([0.5, 0.25]);
  const data = new Uint8Array([...halves, ...q, ...scales]);
  const t = parseSafetensors(
    file(
      {
        h: { dtype: "F16", shape: [2], data_offsets: [0, 4] },
        q: { dtype: "I8", shape: [2, 2], data_offsets: [4, 8] },
        "q.scale": { dtype: "F32", shape: [2], data_offsets: [8, 16] },
      },
      data,
    ),
    "forms",
  );
  const w = expandWeights(t, { h: { shape: [2] }, q: { shape: [2, 2] } }, "forms");
  assert.deepEqual(Array.from(w.get("h")), [1, 0.5]);
  assert.deepEqual(Array.from(w.get("q")), [63.5, -63.5, 0.25, 0]);
  const noScale = parseSafetensors(file({ q: { dtype: "I8", shape: [2, 2], data_offsets: [0, 4] } }, q), "ns");
  assert.throws(() => expandWeights(noScale, { q: { shape: [2, 2] } }, "ns"), /q is int8 but q.scale is not/);
});

test("refuses non-finite weights in every form, naming the tensor and index", () => {
  const bad = [
    ["F32", f32([1, NaN]), 4, "NaN"],
    ["F32", f32([Infinity, 0]), 4, "Infinity"],
    ["F16", new Uint8Array(Uint16Array.from([0x3c00, 0x7e00]).buffer), 2, "NaN"],
    ["F16", new Uint8Array(Uint16Array.from([0xfc00, 0x3c00]).buffer), 2, "-Infinity"],
  ];
  for (const [dtype, bytes, item, shown] of bad) {
    const t = parseSafetensors(file({ w: { dtype, shape: [2], data_offsets: [0, 2 * item] } }, bytes), "bad");
    assert.throws(() => expandWeights(t, { w: { shape: [2] } }, "bad"), new RegExp(`bad: w holds a non-finite weight \\(${shown}\\)`));
  }
  // int8 values are always finite: a NaN or huge scale is what poisons them
  const q = new Uint8Array(Int8Array.from([1, 2, 3, 4]).buffer);
  for (const scale of [NaN, Infinity, 3e38]) {
    const data = new Uint8Array([...q, ...f32([1, scale])]);
    const t = parseSafetensors(
      file(
        {
          q: { dtype: "I8", shape: [2, 2], data_offsets: [0, 4] },
          "q.scale": { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        data,
      ),
      "i8",
    );
    assert.throws(() => expandWeights(t, { q: { shape: [2, 2] } }, "i8"), /i8: q holds a non-finite weight .* at index 2/);
  }
});

test("lays a weight out in the manifest's kernel order, as numpy's transpose does", () => {
  // expected values: numpy.arange(24).reshape(2, 3, 2, 2).transpose(1, 2, 3, 0).ravel()
  const conv = Float32Array.from({ length: 24 }, (_, i) => i);
  const want = [0, 12, 1, 13, 2, 14, 3, 15, 4, 16, 5, 17, 6, 18, 7, 19, 8, 20, 9, 21, 10, 22, 11, 23];
  assert.deepEqual(Array.from(transpose(conv, [2, 3, 2, 2], [1, 2, 3, 0])), want);
  assert.deepEqual(Array.from(transpose(Float32Array.from([0, 1, 2, 3, 4, 5]), [2, 3], [1, 0])), [0, 3, 1, 4, 2, 5]);
  assert.throws(() => transpose(conv, [2, 3, 2, 2], [0, 0, 1, 2], "w"), /w: order \[0,0,1,2\] is not a permutation/);
  // through expandWeights: an int8 form is scaled per output row (file axis 0) before the transpose
  const q = new Uint8Array(Int8Array.from([1, 2, 3, 4, 5, 6]).buffer);
  const data = new Uint8Array(16);
  data.set(q, 0);
  data.set(f32([1, 10]), 8);
  const t = parseSafetensors(
    file(
      {
        k: { dtype: "I8", shape: [2, 3], data_offsets: [0, 6] },
        "k.scale": { dtype: "F32", shape: [2], data_offsets: [8, 16] },
      },
      data,
    ),
    "k",
  );
  const w = expandWeights(t, { k: { shape: [2, 3], order: [1, 0] } }, "k").get("k");
  assert.deepEqual(Array.from(w), [1, 40, 2, 50, 3, 60]);
});
