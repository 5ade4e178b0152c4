"""The drawings stage: digits and non-digits as a person draws them on the page's pad, seen
as the page's model sees them (mnist_webgpu.drawings.preprocess renders pointer paths as the page does).

A person draws one pen line along a digit's centre; MNIST's ink is a scanned stroke. So a
model that should read the page needs drawings, and one that should say "not a digit" needs
drawings that are none. One file, build/data/drawings.npz, holds them all as 28x28 uint8:

    train_digits, train_labels [train] redrawn training digits: every model trains on them
                          too, so that it has seen digits drawn as a pen draws them
    train_negatives       [train] negatives non-digits, their pairs and fragments made of
                          training digits: the "not a digit" output's training examples
    val_digits, val_labels     [train] drawn validation digits: the decline threshold
    val_negatives, val_kinds   as many non-digits (of validation digits): the temperature
    test_digits, test_labels   drawn test digits, and as many non-digits, for the report:
    test_negatives, test_kinds scored once, never chosen on
    train_pen, train_pen_labels    [train] pen_copies renderings of each training writer's
                          real pen digit (mnist_webgpu.data.pendigits), each distorted anew
    val_pen, val_pen_labels,   the validation writers' pen digits as written: the headline
    val_pen_writers            handwriting figure, the checkpoint and the decline rule

Digits are drawn in the drawn-digit bench's four conditions in turn (centred, anywhere and
tilted, small, odd pens). The file records the settings it was made from; a file made from
other settings is not current. Numpy only: doit plans this stage without tinygrad.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mnist_webgpu.core import files
from mnist_webgpu.core.config import Config
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.core.layout import PROJECT
from mnist_webgpu.core.machine import cpu_cores
from mnist_webgpu.data import mnist as data
from mnist_webgpu.data import pendigits
from mnist_webgpu.data.split import mnist_split
from mnist_webgpu.drawings import negatives, pen, preprocess

Stroke = list[list[float]]

CONDITIONS = ("centred", "anywhere", "small", "pen")
APP_PEN = 0.1  # keep equal to site_src/draw.js PEN_WIDTH: the pad's pen, a fraction of its side
THIN_PEN, THICK_PEN = 0.025, 0.2
PEN_STROKES = (2.0, 3.0)  # px: the training copies' stroke widths, about the page's preprocess.STROKE
MARGIN = 0.01  # ink kept this far (a fraction of the pad) from the pad's edges
CHUNK = 250  # drawings per job: each job's random stream is fixed, whatever the process count
SEEDS = {"train": 1, "val": 2, "test": 3, "redrawn": 4, "pen": 5}
AS_WRITTEN = {"size": 0.6, "tilt": 0.0, "anywhere": False, "u": np.zeros(2), "pen": APP_PEN}


class DrawingsError(PipelineError):
    """The drawings file is missing, unreadable or made from other settings."""


def placement(condition: str, rng: np.random.Generator, app_pen: float = APP_PEN) -> dict:
    """Where and how a digit is drawn: long side (pad fraction), tilt (radians), centre, pen."""
    if condition in ("centred", "pen"):
        size, tilt, anywhere = rng.uniform(0.5, 0.8), 0.0, False
    elif condition == "anywhere":
        size, tilt, anywhere = rng.uniform(0.3, 0.95), math.radians(rng.uniform(-12, 12)), True
    elif condition == "small":
        size, tilt, anywhere = rng.uniform(0.15, 0.3), 0.0, True
    else:
        raise ValueError(f"unknown condition {condition!r}: one of {', '.join(CONDITIONS)}")
    width = app_pen if condition != "pen" else (THIN_PEN if rng.random() < 0.5 else THICK_PEN)
    return {"size": size, "tilt": tilt, "anywhere": anywhere, "u": rng.random(2), "pen": width}


def digit_strokes(image: np.ndarray, where: dict, skeleton: np.ndarray | None = None) -> list[Stroke]:
    """The digit's centre line (pen.skeleton_paths) placed on the pad as `where` says."""
    return place(pen.skeleton_paths(image, skeleton), where)


def place(paths: list[np.ndarray], where: dict) -> list[Stroke]:
    """Polylines of (x, y) points, y downwards, in any unit, placed on the pad as `where` says."""
    if not paths:
        return []
    xy = np.concatenate(paths)
    mid = (xy.min(0) + xy.max(0)) / 2
    c, s = math.cos(where["tilt"]), math.sin(where["tilt"])
    turn = np.array([[c, -s], [s, c]])
    turned = [(p - mid) @ turn.T for p in paths]
    allxy = np.concatenate(turned)
    lo, hi = allxy.min(0), allxy.max(0)
    # as large as asked, as long as the pen's outline stays on the pad
    size = min(where["size"], 1 - where["pen"] - 2 * MARGIN)
    scale = size / max(float(max(hi - lo)), 1.0)
    half = (hi - lo) * scale / 2 + where["pen"] / 2 + MARGIN
    centre = np.full(2, 0.5)
    if where["anywhere"]:
        room = np.maximum(0.5 - half, 0)
        centre = 0.5 - room + 2 * room * where["u"]
    shift = centre - (lo + hi) / 2 * scale
    return [(p * scale + shift).tolist() for p in turned]


def seen(drawing: list[Stroke], width: float = APP_PEN, stroke: float = preprocess.STROKE) -> np.ndarray:
    """What the page's model sees for pen strokes: 28x28 uint8 (all zero when nothing shows)."""
    got = preprocess.render_strokes([{"tool": "pen", "width": width, "points": s} for s in drawing], stroke)
    return np.zeros((28, 28), np.uint8) if got is None else np.round(got[0] * 255).astype(np.uint8)


def _digits_job(job: tuple[np.ndarray, int, list[int]]) -> np.ndarray:
    images, first, seed = job
    rng = np.random.default_rng(seed)
    out = np.zeros(images.shape, np.uint8)
    skeletons = pen.skeletons(images)  # thinned together: the same lines, ~4x faster
    for i, image in enumerate(images):
        where = placement(CONDITIONS[(first + i) % len(CONDITIONS)], rng)
        out[i] = seen(digit_strokes(image, where, skeletons[i]), where["pen"])
    return out


def _negatives_job(job: tuple[np.ndarray, int, int, list[int]]) -> tuple[np.ndarray, list[str]]:
    pool, first, count, seed = job
    rng = np.random.default_rng(seed)
    out = np.zeros((count, 28, 28), np.uint8)
    kinds = []
    for i in range(count):
        drawing, kind = negatives.nth(first + i, rng, pool)
        out[i] = seen(drawing)
        kinds.append(kind)
    return out, kinds


def _pen_job(job: tuple[list[tuple[np.ndarray, ...]], int, list[int]]) -> np.ndarray:
    digits, copies, seed = job
    if not copies:  # as written
        return np.stack([seen(place(list(d), AS_WRITTEN)) for d in digits])
    rng = np.random.default_rng(seed)
    out = np.zeros((len(digits) * copies, 28, 28), np.uint8)
    for i, d in enumerate(digits):
        for k in range(copies):
            width = rng.uniform(*PEN_STROKES)
            out[i * copies + k] = seen(place(pendigits.distort(d, rng), AS_WRITTEN), stroke=width)
    return out


def _run(fn, jobs: list, processes: int) -> list:
    if processes <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    # fork: spawn would re-run the caller's main script; the workers touch numpy and Python only
    with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=get_context("fork")) as pool:
        return list(pool.map(fn, jobs))


def draw_digits(images: np.ndarray, seed: int, processes: int = 1) -> np.ndarray:
    """Each image's centre line drawn on the pad, the conditions in turn, as the model sees it."""
    jobs = [(images[lo : lo + CHUNK], lo, [seed, k]) for k, lo in enumerate(range(0, len(images), CHUNK))]
    parts = _run(_digits_job, jobs, processes)
    return np.concatenate(parts) if parts else np.zeros((0, 28, 28), np.uint8)


def draw_negatives(
    digits: np.ndarray, count: int, seed: int, processes: int = 1
) -> tuple[np.ndarray, list[str]]:
    """`count` non-digits, the kinds in turn; pairs and fragments made of `digits`."""
    pool = digits[np.random.default_rng([seed, 0]).choice(len(digits), min(len(digits), 4000), replace=False)]
    jobs = [(pool, lo, min(CHUNK, count - lo), [seed, 1 + k]) for k, lo in enumerate(range(0, count, CHUNK))]
    parts = _run(_negatives_job, jobs, processes)
    if not parts:
        return np.zeros((0, 28, 28), np.uint8), []
    return np.concatenate([p for p, _ in parts]), [k for _, ks in parts for k in ks]


def draw_pen(digits: list[pendigits.PenDigit], copies: int, seed: int, processes: int = 1) -> np.ndarray:
    """Pen digits seen as the page sees them: as written (`copies` 0), or `copies` distorted
    renderings of each, in the digits' order."""
    strokes_ = [d.strokes for d in digits]
    jobs = [
        (strokes_[lo : lo + CHUNK], copies, [seed, k]) for k, lo in enumerate(range(0, len(digits), CHUNK))
    ]
    parts = _run(_pen_job, jobs, processes)
    return np.concatenate(parts) if parts else np.zeros((0, 28, 28), np.uint8)


@dataclass(frozen=True)
class Drawings:
    train_digits: np.ndarray
    train_labels: np.ndarray
    train_negatives: np.ndarray
    val_digits: np.ndarray
    val_labels: np.ndarray
    val_negatives: np.ndarray
    val_kinds: np.ndarray
    test_digits: np.ndarray
    test_labels: np.ndarray
    test_negatives: np.ndarray
    test_kinds: np.ndarray
    train_pen: np.ndarray
    train_pen_labels: np.ndarray
    val_pen: np.ndarray
    val_pen_labels: np.ndarray
    val_pen_writers: np.ndarray


def pen_copies(cfg: Config) -> int:
    """Renderings of each training writer's pen digit: none when no batch draws them."""
    return cfg.train.pen_copies if cfg.train.pen_share else 0


def settings(cfg: Config) -> dict:
    """What decides the drawings: the counts and the split they are drawn from."""
    s = mnist_split(cfg.train)
    return {
        "redrawn": cfg.train.redrawn,
        "negatives": cfg.train.negatives,
        "drawn": cfg.train.drawn,
        "split": [s.n_train, s.n_val, s.n_test],
        "pen": {
            "sha256": pendigits.SHA256,
            "val_writers": list(cfg.train.pen_val_writers),
            "copies": pen_copies(cfg),
        },
    }


def pick(count: int, total: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(total, min(count, total), replace=False))


def make(cfg: Config, mnist: data.Mnist, processes: int | None = None) -> Drawings:
    s = mnist_split(cfg.train)
    processes = processes or cpu_cores()
    train, val = mnist.train_x[: s.n_train], mnist.train_x[s.val]
    val_pick = pick(cfg.train.drawn, s.n_val, SEEDS["val"])
    test_pick = pick(cfg.train.drawn, s.n_test, SEEDS["test"])
    train_pick = pick(cfg.train.redrawn, s.n_train, SEEDS["redrawn"])
    train_neg, _ = draw_negatives(train, cfg.train.negatives, SEEDS["train"], processes)
    val_neg, val_kinds = draw_negatives(val, cfg.train.drawn, SEEDS["val"], processes)
    test_neg, test_kinds = draw_negatives(mnist.test_x[: s.n_test], cfg.train.drawn, SEEDS["test"], processes)
    pen_train, pen_val = pendigits.split(pendigits.load(), cfg.train.pen_val_writers)
    copies = pen_copies(cfg)
    pen_train = pen_train if copies else []
    return Drawings(
        train_digits=draw_digits(train[train_pick], SEEDS["redrawn"], processes),
        train_labels=mnist.train_y[: s.n_train][train_pick],
        train_negatives=train_neg,
        val_digits=draw_digits(val[val_pick], SEEDS["val"], processes),
        val_labels=mnist.train_y[s.val][val_pick],
        val_negatives=val_neg,
        val_kinds=np.array(val_kinds),
        test_digits=draw_digits(mnist.test_x[test_pick], SEEDS["test"], processes),
        test_labels=mnist.test_y[test_pick],
        test_negatives=test_neg,
        test_kinds=np.array(test_kinds),
        train_pen=draw_pen(pen_train, copies, SEEDS["pen"], processes),
        train_pen_labels=np.repeat([d.label for d in pen_train], copies).astype(np.uint8),
        val_pen=draw_pen(pen_val, 0, SEEDS["pen"], processes),
        val_pen_labels=np.array([d.label for d in pen_val], np.uint8),
        val_pen_writers=np.array([d.writer for d in pen_val], np.int64),
    )


def write(path: Path, made: Drawings, made_with: dict) -> None:
    arrays = {k: getattr(made, k) for k in Drawings.__dataclass_fields__}
    with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, settings=np.array(json.dumps(made_with, sort_keys=True)), **arrays)


def read(path: Path, expected: dict) -> Drawings:
    """The drawings at `path`, made from the `expected` settings; else one line saying why."""
    try:
        with np.load(path, allow_pickle=False) as z:
            made_with = json.loads(str(z["settings"]))
            arrays = {k: z[k] for k in Drawings.__dataclass_fields__}
    except FileNotFoundError:
        raise DrawingsError(f"{path}: missing; run `doit drawings`") from None
    except (OSError, ValueError, KeyError) as exc:
        raise DrawingsError(f"{path}: unreadable ({exc}); run `doit drawings` again") from None
    if made_with != expected:
        raise DrawingsError(f"{path}: made from other settings ({made_with}); run `doit drawings` again")
    return Drawings(**arrays)


def is_current(path: Path, expected: dict) -> bool:
    """Whether the file says it was made from `expected` (reads only that record)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["settings"])) == expected
    except (OSError, ValueError, KeyError):
        return False


def ensure(cfg: Config, mnist: data.Mnist, log=print) -> Drawings:
    """The project's drawings, made now if missing or stale (a sweep worker on another machine)."""
    path, expected = PROJECT.drawings, settings(cfg)
    try:
        return read(path, expected)
    except DrawingsError:
        pass
    made = make(cfg, mnist)
    write(path, made, expected)
    log(
        f"drawings: {len(made.train_digits):,} redrawn digits and "
        f"{len(made.train_negatives):,} non-digits, {len(made.train_pen):,} renderings of real pen digits "
        f"to train on; {len(made.val_pen):,} pen digits of "
        f"{len(set(made.val_pen_writers.tolist()))} validation writers; "
        f"{len(made.val_digits):,} validation and {len(made.test_digits):,} test digits drawn, "
        f"as many non-digits each, in {path}"
    )
    return made
