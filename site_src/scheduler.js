// When predictions run: at most one per animation frame while the pen moves, at once when a
// stroke ends (or on a clear, an undo, a new model), never two in flight, and a result that
// no longer answers for the drawing and model on screen is dropped. No DOM here: the app
// passes in what it needs (tests/js/scheduler.test.mjs drives it with fake frames and models).
//
// A "target" is what the screen should answer for right now: { version, model, blank }
// (the pad's change counter, the model object or null while it loads, whether the pad is blank).

/**
 * @param {object} hooks
 * @param {() => {version: number, model: object|null, blank: boolean}} hooks.target
 * @param {() => Float32Array|null} hooks.prepare  the model's input for the drawing, or null when
 *   there is nothing to predict (the app shows the empty state itself)
 * @param {(model: object, input: Float32Array) => Promise<object>} hooks.predict
 * @param {(result: object) => void} hooks.show  a result that still answers for the screen
 * @param {(error: Error, model: object) => void} hooks.fail  a prediction failed on that model
 * @param {(callback: () => void) => void} hooks.requestFrame
 * @param {(settled: boolean) => void} hooks.settle  true once the screen answers for the current drawing
 */
export function createScheduler({ target, prepare, predict, show, fail, requestFrame, settle }) {
  let inFlight = null; // the target of the prediction running now
  let shown = null; // the target of the prediction on screen
  // a request made while one runs: "now" runs as soon as it finishes, "frame" waits for a frame
  let pending = null;
  let frameRequested = false;
  let idle = Promise.resolve();

  const same = (a, b) => a.version === b.version && a.model === b.model;

  function frame() {
    settle(false);
    if (frameRequested) return;
    frameRequested = true;
    requestFrame(() => {
      frameRequested = false;
      now("frame");
    });
  }

  async function now(when = "now") {
    settle(false);
    const wanted = target();
    if (inFlight) {
      // the running one already answers for this drawing and model: its result is the final one
      if (same(inFlight, wanted)) return;
      if (pending !== "now") pending = when;
      return;
    }
    if (shown && same(shown, wanted)) {
      settle(!frameRequested); // nothing changed since the prediction on screen
      return;
    }
    const input = prepare();
    if (!input) {
      settle(!frameRequested);
      return;
    }
    if (!wanted.model) return; // the app calls now() again once the model is ready
    inFlight = wanted;
    let done;
    idle = new Promise((resolve) => (done = resolve));
    try {
      const result = await predict(wanted.model, input);
      const current = target();
      // stale: another model took over, or the drawing was cleared while this one ran
      const stale = current.model !== wanted.model || (current.version !== wanted.version && current.blank);
      if (!stale) {
        show(result);
        shown = wanted;
      }
    } catch (err) {
      fail(err, wanted.model);
    } finally {
      inFlight = null;
      done();
      if (pending) {
        const next = pending;
        pending = null;
        if (next === "now") now();
        else frame();
      } else {
        settle(target().version === wanted.version && !frameRequested);
      }
    }
  }

  return {
    /** Live drawing: predict on the next animation frame (one per frame however many changes). */
    frame,
    /** Stroke end, clear, undo, a model ready: predict as soon as nothing runs. */
    now,
    /** Forget the result on screen (the app cleared it): the next request predicts again. */
    forget() {
      shown = null;
    },
    /** Resolves once no prediction is running (a model may then be disposed). */
    idle: () => idle,
  };
}
