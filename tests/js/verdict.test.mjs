// node --test tests/js: the page's decline rules (site_src/verdict.js) and how the runtime turns
// logits into the ten digits' probabilities and p("not a digit") (site_src/runtime.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { BrokenModelError, readLogits, softmax } from "../../site_src/runtime.js";
import { MIN_EXTENT, judge } from "../../site_src/verdict.js";

const close = (a, b, tol = 1e-6) => assert.ok(Math.abs(a - b) < tol, `${a} vs ${b}`);

test("a temperature divides the logits before the softmax", () => {
  const p = softmax([2, 0, 0], 2);
  const e = Math.exp(1);
  close(p[0], e / (e + 2));
  close(p.reduce((a, b) => a + b, 0), 1);
});

test("eleven logits: the bars are the ten digits renormalized, the 11th is p(not a digit)", () => {
  const logits = [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 3];
  const { probs, notDigit, threshold } = readLogits(logits, { temperature: 1, threshold: 0.8 });
  assert.equal(probs.length, 10);
  close(probs.reduce((a, b) => a + b, 0), 1);
  const e3 = Math.exp(3);
  close(probs[4], e3 / (e3 + 9));
  close(notDigit, e3 / (2 * e3 + 9));
  assert.equal(threshold, 0.8);
});

test("ten logits: no 'not a digit' answer and no threshold", () => {
  const { probs, notDigit, threshold } = readLogits([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], undefined);
  close(probs.reduce((a, b) => a + b, 0), 1);
  assert.equal(notDigit, null);
  assert.equal(threshold, null);
});

test("judge: too small, then the model's own rule, else a digit", () => {
  assert.deepEqual(judge({ extent: MIN_EXTENT / 2 }), { decline: true, hint: "Draw bigger" });
  assert.deepEqual(judge({ extent: 0.5, notDigit: 0.95, threshold: 0.9 }), { decline: true, hint: "Draw one digit" });
  assert.deepEqual(judge({ extent: 0.5, notDigit: 0.85, threshold: 0.9 }), { decline: false, hint: "" });
  assert.deepEqual(judge({ extent: 0.5, notDigit: null, threshold: null }), { decline: false, hint: "" });
  // the size rule speaks first: a tiny scribble is asked to be bigger
  assert.equal(judge({ extent: 0.01, notDigit: 0.99, threshold: 0.5 }).hint, "Draw bigger");
});

test("outputs that are not finite probabilities are a broken model, never an answer", () => {
  const broken = (fn) => assert.throws(fn, (err) => err instanceof BrokenModelError && /not finite probabilities/.test(err.message));
  broken(() => readLogits([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0], { temperature: 0, threshold: 0.5 })); // "NaN% sure"
  broken(() => readLogits([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0], { temperature: NaN, threshold: 0.5 }));
  broken(() => readLogits([0, 0, 0, 0, 0, 0, 0, Infinity, 0, 0], undefined)); // huge biases overflow float32
  broken(() => readLogits([NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0], undefined));
  const { probs } = readLogits([0, 0, 0, 0, 0, 0, 0, 3e38, 0, 0], undefined); // huge but finite: an answer
  close(probs[7], 1);
});
