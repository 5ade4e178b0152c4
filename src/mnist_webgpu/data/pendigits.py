"""Real people's pen digits: UCI pendigits' 30 training writers, as pen trajectories.

The project carries them itself (datasets/pendigits-train.xz beside this module: xz-compressed
UNIPEN text, CC BY 4.0: E. Alpaydin and F. Alimoglu, Bogazici University, 1998; UCI Machine
Learning Repository), as no machine here reaches the data set's home.
`load` checks the SHA-256 of the text and
parses it into digits of strokes; `split` holds whole writers out for validation, since
one writer's digits look alike and a split by digit would flatter the model.

Coordinates come back as the page's pad has them: y grows downwards (mnist_webgpu.drawings
places them on the pad). `distort` writes a digit again, as its writer might have: the
training copies. Numpy only: doit plans the drawings stage without tinygrad.
"""

from __future__ import annotations

import hashlib
import lzma
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_webgpu.core.errors import PipelineError

SOURCE = Path(__file__).resolve().parent / "datasets" / "pendigits-train.xz"
SHA256 = "a66225d68d7d68591e62944df1ad33b3f5aa608e2df2505844b41f5568a80da4"  # of the UNIPEN text
WRITERS = range(1, 31)

# distort(): how far another writing of a digit strays, chosen on the validation writers
ROTATE = 8.0  # degrees
SLANT = 0.25  # columns per row
STRETCH = 0.15  # log of the width-to-height change
WARP = 0.05  # of the digit's extent: the elastic field's largest displacement
JITTER = 0.006  # of the digit's extent, per point
DROP = 0.2  # of a stroke's inner points


class PenDataError(PipelineError):
    """The pen data file is missing, altered or malformed; the message names file and line."""


@dataclass(frozen=True)
class PenDigit:
    label: int
    writer: int
    strokes: tuple[np.ndarray, ...]  # (n, 2) float64 tablet points per stroke, y downwards


def parse(text: str, where: str = "<text>") -> list[PenDigit]:
    """UNIPEN text -> digits; one PenDataError line naming `where` and the line number."""
    digits: list[PenDigit] = []
    label = writer = None
    strokes: list[np.ndarray] = []
    points: list[list[int]] | None = None  # the open stroke
    started = opened = 0  # the lines of the open digit's .SEGMENT and its open stroke's .PEN_DOWN

    def fail(n: int, why: str):
        raise PenDataError(f"{where}:{n}: {why}")

    def finish() -> None:
        if label is None:
            return
        if points is not None:
            fail(opened, "a stroke is still open (.PEN_DOWN without .PEN_UP)")
        if writer is None:
            fail(started, f"digit {label} has no .COMMENT line naming its writer")
        if not strokes:
            fail(started, f"digit {label} has no strokes")
        digits.append(PenDigit(label, writer, tuple(strokes)))

    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        head = words[0]
        if head == ".SEGMENT":
            finish()
            quoted = line.split('"')
            if len(quoted) < 3 or quoted[1] not in tuple("0123456789"):
                fail(n, f'expected a digit label like "8" in {line.strip()!r}')
            label, writer, strokes, points, started = int(quoted[1]), None, [], None, n
        elif head == ".COMMENT" and label is not None:
            if len(words) < 3 or not words[2].isdigit() or int(words[2]) not in WRITERS:
                fail(n, f"expected '.COMMENT <label> <writer 1-30> ...', got {line.strip()!r}")
            writer = int(words[2])
        elif head == ".PEN_DOWN":
            if label is None or points is not None:
                fail(n, ".PEN_DOWN outside a digit or inside an open stroke")
            points, opened = [], n
        elif head == ".PEN_UP":
            if points is None:
                fail(n, ".PEN_UP without .PEN_DOWN")
            if not points:
                fail(n, "a stroke without points")
            strokes.append(np.array(points, np.float64) * [1, -1])  # the tablet's y grows upwards
            points = None
        elif head.startswith("."):
            continue  # .INCLUDE, .LEXICON, .HIERARCHY, .DT (pauses): nothing the shape needs
        elif points is not None:
            if len(words) != 2 or not all(w.lstrip("-").isdigit() for w in words):
                fail(n, f"expected two integer coordinates, got {line.strip()!r}")
            points.append([int(words[0]), int(words[1])])
        else:
            fail(n, f"unexpected {line.strip()!r} outside a stroke")
    finish()
    if not digits:
        raise PenDataError(f"{where}: no digits")
    return digits


def load(path: Path = SOURCE, sha256: str = SHA256) -> list[PenDigit]:
    """The pen digits in the xz file at `path`, whose text must have the digest `sha256`."""
    try:
        raw = lzma.decompress(Path(path).read_bytes())
    except FileNotFoundError:
        raise PenDataError(f"{path}: missing (the project carries it in mnist_webgpu/datasets/)") from None
    except (OSError, lzma.LZMAError) as exc:
        raise PenDataError(f"{path}: not a readable xz file ({exc})") from None
    if (got := hashlib.sha256(raw).hexdigest()) != sha256:
        raise PenDataError(f"{path}: SHA-256 of its text is {got}, expected {sha256}")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PenDataError(f"{path}: not ASCII text ({exc})") from None
    return parse(text, str(path))


def split(digits: list[PenDigit], val_writers: tuple[int, ...]) -> tuple[list[PenDigit], list[PenDigit]]:
    """(training writers' digits, validation writers' digits): no writer on both sides."""
    held = set(val_writers)
    return [d for d in digits if d.writer not in held], [d for d in digits if d.writer in held]


def distort(digit: tuple[np.ndarray, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """The digit as the same person might have written it another time: slanted, turned and
    stretched a little, bent by a smooth elastic field, the points jittered and some dropped
    (a faster or slower pen). Acts on the trajectory, before any pixel exists."""
    xy = np.concatenate(digit)
    lo, hi = xy.min(0), xy.max(0)
    extent = max(float((hi - lo).max()), 1e-9)
    mid = (lo + hi) / 2
    turn = math.radians(rng.uniform(-ROTATE, ROTATE))
    c, s = math.cos(turn), math.sin(turn)
    stretch = math.exp(rng.uniform(-STRETCH, STRETCH))
    # y grows downwards: a positive slant leans the top of the digit to the right
    linear = np.array([[c, -s], [s, c]]) @ np.array(
        [[stretch, -rng.uniform(-SLANT, SLANT)], [0, 1 / stretch]]
    )
    waves = rng.uniform(0.5, 1.5, (2, 2)) * 2 * math.pi / extent  # per axis, cycles over the digit
    phase = rng.uniform(0, 2 * math.pi, 2)
    amplitude = rng.uniform(0, WARP, 2) * extent
    out = []
    for stroke in digit:
        p = (stroke - mid) @ linear.T
        p = p + amplitude * np.sin(p @ waves.T + phase)
        p = p + rng.normal(0, JITTER * extent, p.shape)
        if len(p) > 2:
            keep = rng.random(len(p)) >= DROP
            keep[[0, -1]] = True  # a stroke keeps its ends
            p = p[keep]
        out.append(p)
    return out
