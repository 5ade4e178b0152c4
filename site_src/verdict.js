// What the page says when a drawing cannot be read as a digit, beside the model's answer.
//
// A tap, a dot or a tiny tick carries no shape: its pointer paths span under MIN_EXTENT of
// the pad, so the page shows "?" and asks for a bigger drawing instead of naming the digit
// the model guesses (a single tap used to read "0, 99.8%"). The bars still show the ten
// probabilities. The smallest drawn digits the bench draws span 15% of the pad.

export const MIN_EXTENT = 0.05;

export function judge({ extent }) {
  if (extent < MIN_EXTENT) return { decline: true, hint: "Draw bigger" };
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
