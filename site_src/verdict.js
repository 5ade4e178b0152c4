// What the page says when a drawing cannot be read as a digit, beside the model's answer.
//
// Two rules, and the page shows "?" with a hint instead of naming a digit:
// - a tap, a dot or a tiny tick carries no shape: its pointer paths span under MIN_EXTENT of
//   the pad ("Draw bigger"; a single tap used to read "0, 99.8%"). The smallest drawn digits
//   the bench draws span 15% of the pad;
// - the model's own "not a digit" output (letters, scribbles, shapes, two digits) exceeds the
//   threshold its manifest carries, set on validation digits to refuse at most 1% of those
//   drawn on the pad and of real writers' pen digits ("Draw one digit"; a letter A used to
//   read "4, 100%").
// The bars still show the ten probabilities.

export const MIN_EXTENT = 0.05;

export function judge({ extent, notDigit = null, threshold = null }) {
  if (extent < MIN_EXTENT) return { decline: true, hint: "Draw bigger" };
  if (notDigit !== null && threshold !== null && notDigit > threshold) return { decline: true, hint: "Draw one digit" };
  return { decline: false, hint: "" };
}

// After the model's answer is on screen: replace the digit by "?" and the label by the hint.
export function showVerdict(ui, root, verdict) {
  root.dataset.declined = String(verdict.decline);
  if (!verdict.decline) return;
  root.dataset.state = "declined";
  ui.prediction.textContent = "?";
  ui.label.textContent = verdict.hint;
  ui.confidence.textContent = "";
}
