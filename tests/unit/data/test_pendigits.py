"""mnist_webgpu.data.pendigits: real people's pen digits, read, checked, split by writer, distorted;
and how they reach the drawings stage and the batches."""

from __future__ import annotations

import hashlib
import lzma

import numpy as np
import pytest

from mnist_webgpu.core import config
from mnist_webgpu.data import pendigits
from mnist_webgpu.drawings import pad as drawings

TINY = """.INCLUDE        dene.doc
.LEXICON "0" "1" "2" "3" "4" "5" "6" "7" "8" "9"

.SEGMENT DIGIT    0 ? "7"
.COMMENT 7 3  11
.PEN_DOWN
 10  90
 60  90
 40  10
.PEN_UP
.DT 120
.PEN_DOWN
 20  50
 55  50
.PEN_UP

.SEGMENT DIGIT    1 ? "1"
.COMMENT 1 4  12
.PEN_DOWN
 30  80
 30  5
.PEN_UP
"""


def write_xz(path, text: str) -> str:
    path.write_bytes(lzma.compress(text.encode("ascii")))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def test_a_tiny_file_reads_as_digits_of_strokes_with_y_downwards(tmp_path):
    path = tmp_path / "tiny.xz"
    digest = write_xz(path, TINY)
    seven, one = pendigits.load(path, digest)
    assert (seven.label, seven.writer, len(seven.strokes)) == (7, 3, 2)
    assert (one.label, one.writer, len(one.strokes)) == (1, 4, 1)
    # the tablet's y grows upwards, the pad's downwards: the 7's bar (y 90) is above its foot
    assert seven.strokes[0].tolist() == [[10, -90], [60, -90], [40, -10]]
    assert seven.strokes[0][:, 1].min() < seven.strokes[0][-1, 1]


@pytest.mark.parametrize(
    ("broken", "line", "why"),
    [
        (TINY.replace('? "7"', '? "x"'), 4, "expected a digit label"),
        (TINY.replace(".COMMENT 7 3  11", ".COMMENT 7 31  11"), 5, "writer 1-30"),
        (TINY.replace(" 60  90", " 60  9.5"), 8, "two integer coordinates"),
        (TINY.replace(".PEN_UP\n.DT 120", ".DT 120", 1), 11, "inside an open stroke"),
        (TINY.replace(".COMMENT 1 4  12\n", ""), 17, "no .COMMENT line"),
        (TINY.rstrip("\n").rsplit("\n", 1)[0], 19, "still open"),
    ],
)
def test_a_malformed_file_is_one_line_naming_file_and_line(tmp_path, broken, line, why):
    path = tmp_path / "broken.xz"
    digest = write_xz(path, broken)
    with pytest.raises(pendigits.PenDataError, match=rf"^{path}:{line}: .*{why}") as info:
        pendigits.load(path, digest)
    assert "\n" not in str(info.value)


def test_an_altered_missing_or_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "pen.xz"
    digest = write_xz(path, TINY)
    write_xz(path, TINY.replace(" 30  5", " 30  6"))  # one coordinate changed
    with pytest.raises(
        pendigits.PenDataError, match=rf"^{path}: SHA-256 of its text is \w+, expected {digest}$"
    ):
        pendigits.load(path, digest)
    path.write_bytes(b"plain text, not xz")
    with pytest.raises(pendigits.PenDataError, match="not a readable xz file"):
        pendigits.load(path, digest)
    with pytest.raises(pendigits.PenDataError, match="missing"):
        pendigits.load(tmp_path / "absent.xz", digest)


def test_the_carried_file_is_the_thirty_training_writers_whole():
    digits = pendigits.load()  # checks the committed file against the published digest
    assert len(digits) == 7494
    assert sorted({d.writer for d in digits}) == list(range(1, 31))
    assert {d.label for d in digits} == set(range(10))
    per_writer = np.bincount([d.writer for d in digits])[1:]
    assert per_writer.min() >= 247 and per_writer.max() == 250
    assert all(len(s) >= 1 for d in digits for s in d.strokes)


def test_validation_writers_are_held_out_whole():
    digits = pendigits.load()
    train, val = pendigits.split(digits, (25, 26, 27, 28, 29, 30))
    train_writers, val_writers = {d.writer for d in train}, {d.writer for d in val}
    assert not train_writers & val_writers, "no writer on both sides"
    assert val_writers == {25, 26, 27, 28, 29, 30} and train_writers == set(range(1, 25))
    assert len(train) + len(val) == len(digits)


def test_a_distorted_digit_is_another_writing_of_the_same_strokes():
    digit = pendigits.load()[0].strokes
    rng = np.random.default_rng(0)
    extent = np.ptp(np.concatenate(digit), axis=0).max()
    again = [pendigits.distort(digit, rng) for _ in range(20)]
    for other in again:
        assert len(other) == len(digit)
        for a, b in zip(digit, other, strict=True):
            assert 2 <= len(b) <= len(a) if len(a) > 2 else len(b) == len(a)
        # a different writing, but about the same shape and size: no point strays past a third
        # of the digit from where the original's affine image would put it
        shape = np.ptp(np.concatenate(other), axis=0).max()
        assert 0.6 * extent < shape < 1.6 * extent
    assert not np.allclose(again[0][0][0], again[1][0][0]), "each writing is drawn anew"


def test_validation_writers_are_drawn_as_written_and_training_writers_distorted(fast_config, fast_drawings):
    # what the drawings stage made (drawings.make) of the fast config, shared by the session
    made = drawings.read(fast_drawings, drawings.settings(fast_config))
    train, val = pendigits.split(pendigits.load(), fast_config.train.pen_val_writers)
    copies = fast_config.train.pen_copies
    assert made.val_pen.shape == (len(val), 28, 28)
    assert made.val_pen_labels.tolist() == [d.label for d in val]
    assert made.val_pen_writers.tolist() == [d.writer for d in val]
    assert set(made.val_pen_writers.tolist()) == set(fast_config.train.pen_val_writers)
    assert made.train_pen.shape == (len(train) * copies, 28, 28)
    assert made.train_pen_labels.tolist() == np.repeat([d.label for d in train], copies).tolist()
    # as written: exactly what the page's renderer makes of the strokes placed on the pad
    want = drawings.seen(drawings.place(list(val[0].strokes), drawings.AS_WRITTEN))
    assert np.array_equal(made.val_pen[0], want)
    # every rendering shows ink, boxed as MNIST is
    for image in (*made.val_pen[:50], *made.train_pen[:50]):
        ys, xs = np.nonzero(image >= 64)
        assert 15 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 22


def test_no_batch_draws_pen_digits_means_no_training_copies(fast_config):
    import dataclasses

    off = dataclasses.replace(fast_config, train=dataclasses.replace(fast_config.train, pen_share=0.0))
    assert drawings.settings(off)["pen"]["copies"] == 0
    assert drawings.settings(fast_config)["pen"]["copies"] == fast_config.train.pen_copies


def test_a_batch_draws_pen_digits_in_the_configured_share():
    from tinygrad import Tensor

    from mnist_webgpu.train import trainer as train

    Tensor.manual_seed(3)
    n_train, n_pen, batch = 10_000, 600, 128
    idx = np.concatenate([train.sample_indices(n_train, batch, n_pen, 0.25).numpy() for _ in range(40)])
    from_pen = idx >= n_train - n_pen
    assert idx.min() >= 0 and idx.max() < n_train
    assert from_pen.reshape(40, batch).sum(1).tolist() == [32] * 40, "a quarter of every batch"
    # uniform within each part: every pen digit and most of the rest get drawn
    assert len(np.unique(idx[from_pen])) > 0.8 * n_pen
    assert np.unique(idx[~from_pen]).size > 3000
    assert not (train.sample_indices(n_train, batch).numpy() >= n_train).any()


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("pen_share = 0.95", "a fraction of each batch between 0 and 0.9"),
        ("pen_copies = 0", "an integer between 1 and 64"),
        ("pen_val_writers = [25, 25]", "distinct writer ids"),
        ("pen_val_writers = [31]", "distinct writer ids between 1 and 30"),
        ("pen_val_writers = []", "a list of 1 to 15"),
    ],
)
def test_pen_settings_are_validated(tmp_path, value, expect):
    path = tmp_path / "config.toml"
    path.write_text(f"[train]\n{value}\n")
    key = value.split(" ")[0]
    with pytest.raises(config.ConfigError, match=rf"^{path}: train\.{key}: expected .*{expect}"):
        config.load(path)
