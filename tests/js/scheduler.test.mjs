// node --test tests/js: site_src/scheduler.js, the app's prediction scheduling, with a fake pad,
// fake models whose predictions finish when the test says so, and animation frames on demand.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createScheduler } from "../../site_src/scheduler.js";

/** A controllable world: a pad (version, blank), a model, frames and predictions released by hand. */
function world() {
  const w = {
    version: 0,
    blank: false,
    model: { name: "a" },
    frames: [],
    runs: [], // { model, input, resolve, reject }
    shown: [],
    failures: [],
    settled: null,
    maxInFlight: 0,
    inFlight: 0,
    prepared: 0,
  };
  w.scheduler = createScheduler({
    target: () => ({ version: w.version, model: w.model, blank: w.blank }),
    prepare: () => {
      w.prepared++;
      return w.blank ? null : new Float32Array([w.version]);
    },
    predict: (model, input) =>
      new Promise((resolve, reject) => {
        w.inFlight++;
        w.maxInFlight = Math.max(w.maxInFlight, w.inFlight);
        w.runs.push({ model, input: input[0], resolve, reject });
      }).finally(() => w.inFlight--),
    show: (result) => w.shown.push(result),
    fail: (err) => w.failures.push(err.message),
    requestFrame: (cb) => w.frames.push(cb),
    settle: (s) => {
      w.settled = s;
    },
  });
  w.flushFrames = () => w.frames.splice(0).forEach((cb) => cb());
  /** Finish the oldest running prediction with `result` and let the scheduler react. */
  w.finish = async (result) => {
    const run = w.runs.find((r) => !r.done);
    run.done = true;
    run.resolve(result ?? `${run.model.name}@${run.input}`);
    await tick();
  };
  return w;
}

const tick = () => new Promise((r) => setTimeout(r, 0));

test("live changes coalesce into one prediction per animation frame", async () => {
  const w = world();
  for (let i = 0; i < 5; i++) {
    w.version++;
    w.scheduler.frame();
  }
  assert.equal(w.frames.length, 1, "one frame requested for five changes");
  assert.equal(w.runs.length, 0, "nothing runs before the frame");
  assert.equal(w.settled, false);
  w.flushFrames();
  await tick();
  assert.equal(w.runs.length, 1);
  await w.finish();
  assert.deepEqual(w.shown, ["a@5"]);
  assert.equal(w.settled, true);
});

test("never two in flight: a request while one runs waits, and only the latest drawing runs next", async () => {
  const w = world();
  w.version = 1;
  w.scheduler.now();
  await tick();
  w.version = 2;
  w.scheduler.frame();
  w.flushFrames();
  w.version = 3;
  w.scheduler.now(); // stroke end: wins over the frame request
  w.scheduler.now();
  await tick();
  assert.equal(w.runs.length, 1, "the second waits for the first");
  await w.finish();
  assert.equal(w.runs.length, 2);
  assert.equal(w.runs[1].input, 3, "the queued run predicts the drawing as it is now");
  assert.equal(w.settled, false, "the shown result is for an older drawing");
  await w.finish();
  assert.deepEqual(w.shown, ["a@1", "a@3"]);
  assert.equal(w.maxInFlight, 1);
  assert.equal(w.settled, true);
});

test("a request for the drawing already running does not run it again", async () => {
  const w = world();
  w.scheduler.now();
  await tick();
  w.scheduler.now();
  w.scheduler.now();
  await w.finish();
  assert.equal(w.runs.length, 1);
  w.scheduler.now(); // the result on screen answers for this drawing and model
  await tick();
  assert.equal(w.runs.length, 1);
  assert.equal(w.settled, true);
});

test("a result for a model the user switched away from is dropped, the new model predicts", async () => {
  const w = world();
  const first = w.model;
  w.scheduler.now();
  await tick();
  w.model = { name: "b" };
  w.scheduler.now();
  await w.finish();
  assert.deepEqual(w.shown, [], "the old model's result never shows");
  assert.equal(w.runs[1].model.name, "b");
  await w.finish();
  assert.deepEqual(w.shown, ["b@0"]);
  assert.notEqual(w.runs[1].model, first);
});

test("a result for a drawing cleared meanwhile is dropped; one for a drawing still growing shows", async () => {
  const w = world();
  w.version = 1;
  w.scheduler.now();
  await tick();
  w.version = 2; // more ink: the running result is still worth showing while the next one runs
  w.scheduler.frame();
  await w.finish();
  assert.deepEqual(w.shown, ["a@1"]);
  w.flushFrames();
  await tick();
  w.version = 3;
  w.blank = true; // cleared while the prediction for version 2 runs
  w.scheduler.now();
  await w.finish();
  assert.deepEqual(w.shown, ["a@1"], "a cleared pad shows no stale digit");
  assert.equal(w.runs.length, 2, "a blank pad needs no prediction");
  assert.equal(w.settled, true);
});

test("without a model nothing runs and the screen is not settled; forget() makes it predict again", async () => {
  const w = world();
  w.model = null;
  w.scheduler.now();
  await tick();
  assert.equal(w.runs.length, 0);
  assert.equal(w.prepared, 1, "the preview still follows the drawing");
  assert.equal(w.settled, false);
  w.model = { name: "b" };
  w.scheduler.now();
  await w.finish();
  assert.deepEqual(w.shown, ["b@0"]);
  w.scheduler.forget();
  w.scheduler.now();
  await w.finish();
  assert.equal(w.runs.length, 2);
});

test("a failed prediction is reported, the next request runs, idle() waits for the run", async () => {
  const w = world();
  w.scheduler.now();
  await tick();
  let idle = false;
  w.scheduler.idle().then(() => {
    idle = true;
  });
  await tick();
  assert.equal(idle, false);
  w.runs[0].done = true;
  w.runs[0].reject(new Error("device lost"));
  await tick();
  assert.equal(idle, true);
  assert.deepEqual(w.failures, ["device lost"]);
  w.version++;
  w.scheduler.now();
  await w.finish();
  assert.deepEqual(w.shown, ["a@1"]);
});
