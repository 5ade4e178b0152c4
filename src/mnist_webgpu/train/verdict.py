"""The "not a digit" answer: calibrate it on validation drawings, then score it.

A model trained with negatives (mnist_webgpu.drawings) has an 11th output, "not a digit".
The page turns logits into probabilities with softmax(logits / T) and declines a drawing
when p(not a digit) exceeds a threshold. Both numbers are chosen on the validation split:

- T (temperature scaling, Guo et al. 2017) minimises the negative log-likelihood of the
  validation digits, drawn and plain, and validation non-digits, so the bars' percentages
  mean what they say;
- the threshold is the lowest that declines at most DIGITS_DECLINED of each set of validation
  digits people write: those drawn on the pad, and the validation writers' real pen digits.
  Each set on its own, so the pen digits (rarely refused) cannot lend the drawn ones their
  share: a person's digit is rarely refused, and everything less digit-like than that is.

Numpy only, the same arithmetic the page does (site_src/verdict.js).
"""

from __future__ import annotations

import numpy as np

from mnist_webgpu.core import records

NOT_A_DIGIT = 10  # the extra output's index
DIGITS_DECLINED = 0.01  # of each set of validation digits: what issue 26 allows of real pen digits
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURES with the lowest mean negative log-likelihood of `labels`."""
    rows = np.arange(len(labels))

    def nll(t: float) -> float:
        return float(-np.log(softmax(logits, t)[rows, labels] + 1e-300).mean())

    return float(min(TEMPERATURES, key=nll))


def calibrate(
    val_logits: np.ndarray, val_labels: np.ndarray, digit_sets: list[np.ndarray]
) -> records.Decline:
    """T from validation logits (digits and non-digits, labels 0-10); the threshold from each
    set of people's validation digits' p(not a digit) at that T (empty sets are skipped)."""
    t = fit_temperature(val_logits, val_labels)
    quantiles = [
        np.quantile(softmax(d, t)[:, NOT_A_DIGIT], 1 - DIGITS_DECLINED) for d in digit_sets if len(d)
    ]
    return records.Decline(temperature=t, threshold=float(max(quantiles)))


def declined(logits: np.ndarray, rule: records.Decline | None) -> np.ndarray:
    """Which rows the page declines for the model's answer (the size rule aside)."""
    if rule is None:
        return np.zeros(len(logits), bool)
    return softmax(logits, rule.temperature)[:, NOT_A_DIGIT] > rule.threshold


def answers(logits: np.ndarray, rule: records.Decline | None) -> np.ndarray:
    """The digit the page names for each row, -1 where it declines: argmax of the ten digits."""
    return np.where(declined(logits, rule), -1, logits[:, :10].argmax(1))


def handwriting(rule: records.Decline | None, logits: np.ndarray, labels: np.ndarray, writers: np.ndarray):
    """The page's answers on real pen digits (logits, labels, writer ids), by writer and digit."""
    right = answers(logits, rule) == labels
    by_writer = {str(w): float(right[writers == w].mean()) for w in sorted(set(writers.tolist()))}
    worst = min(by_writer, key=by_writer.get)
    return records.Handwriting(
        digits=len(labels),
        writers=len(by_writer),
        accuracy=float(right.mean()),
        declined=float(declined(logits, rule).mean()),
        worst_writer=int(worst),
        worst_accuracy=by_writer[worst],
        by_writer=by_writer,
        by_digit=[float(right[labels == d].mean()) if (labels == d).any() else 0.0 for d in range(10)],
    )


def figures(
    rule: records.Decline | None,
    drawn: tuple[np.ndarray, np.ndarray],
    mnist_logits: np.ndarray,
    nondigits: tuple[np.ndarray, np.ndarray],
) -> records.Drawn:
    """The page's answers on drawn digits (logits, labels), plain MNIST digits and non-digits
    (logits, kinds)."""
    drawn_logits, labels = drawn
    neg_logits, kinds = nondigits
    said = answers(drawn_logits, rule)
    refused = declined(neg_logits, rule)
    return records.Drawn(
        digits=len(labels),
        accuracy=float((said == labels).mean()),
        declined=float((said == -1).mean()),
        mnist_declined=float(declined(mnist_logits, rule).mean()),
        nondigits=len(kinds),
        nondigits_declined=float(refused.mean()) if len(kinds) else 0.0,
        nondigits_declined_by_kind={str(k): float(refused[kinds == k].mean()) for k in sorted(set(kinds))},
    )
