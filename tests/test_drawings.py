"""mnist_webgpu.drawings: digits and non-digits drawn as on the page, as the page's model sees them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mnist_webgpu import config, drawings, negatives, strokes
from mnist_webgpu.layout import split


@pytest.fixture(scope="module")
def small(fast_config):
    return dataclasses.replace(
        fast_config, train=dataclasses.replace(fast_config.train, negatives=40, drawn=24)
    )


@pytest.fixture(scope="module")
def made(small, mnist):
    return drawings.make(small, mnist, processes=1)


def test_made_drawings_have_the_configured_counts_and_ink(small, made, mnist):
    assert made.train_negatives.shape == (40, 28, 28) and made.train_negatives.dtype == np.uint8
    assert made.val_digits.shape == made.test_digits.shape == (24, 28, 28)
    assert len(made.val_negatives) == len(made.test_negatives) == 24
    assert sorted(set(made.val_kinds)) == sorted(negatives.KINDS), "every kind of non-digit, in turn"
    # every drawing shows ink, boxed as MNIST is: the long side within the 20 px box
    for images in (made.train_negatives, made.val_digits, made.test_negatives):
        assert (images.reshape(len(images), -1).max(1) > 0).all()
    s = split(small.train)
    picked = mnist.train_y[s.val]
    assert set(made.val_labels) <= set(picked.tolist())
    assert set(made.test_labels) <= set(mnist.test_y[: s.n_test].tolist())


def test_the_same_seed_draws_the_same_images_whatever_the_process_count(mnist, monkeypatch):
    monkeypatch.setattr(drawings, "CHUNK", 6)  # several jobs from few drawings
    digits = mnist.train_x[:500]
    one, kinds_one = drawings.draw_negatives(digits, 20, seed=4, processes=1)
    two, kinds_two = drawings.draw_negatives(digits, 20, seed=4, processes=2)
    assert np.array_equal(one, two) and kinds_one == kinds_two
    assert np.array_equal(drawings.draw_digits(digits[:14], 4, 1), drawings.draw_digits(digits[:14], 4, 2))
    other, _ = drawings.draw_negatives(digits, 20, seed=5, processes=1)
    assert not np.array_equal(one, other)


def test_a_drawn_digit_is_what_the_pages_renderer_makes_of_its_strokes(mnist):
    image = mnist.train_x[0]
    rng = np.random.default_rng([5, 0])
    where = drawings.placement(drawings.CONDITIONS[0], rng)
    want = strokes.render_strokes(
        [{"tool": "pen", "width": where["pen"], "points": s} for s in drawings.digit_strokes(image, where)]
    )[0]
    got = drawings.draw_digits(image[None], seed=5)[0]
    assert np.abs(got / 255 - want).max() <= 0.5 / 255 + 1e-9


def test_stale_or_missing_drawings_are_one_line_naming_the_file(small, made, tmp_path):
    path = tmp_path / "drawings.npz"
    with pytest.raises(drawings.DrawingsError, match=rf"^{path}: missing; run `doit drawings`$"):
        drawings.read(path, drawings.settings(small))
    drawings.write(path, made, drawings.settings(small))
    assert drawings.is_current(path, drawings.settings(small))
    other = dataclasses.replace(small, train=dataclasses.replace(small.train, negatives=41))
    assert not drawings.is_current(path, drawings.settings(other))
    with pytest.raises(drawings.DrawingsError, match="made from other settings"):
        drawings.read(path, drawings.settings(other))
    path.write_bytes(b"not a zip")
    with pytest.raises(drawings.DrawingsError, match="unreadable"):
        drawings.read(path, drawings.settings(small))


def test_config_bounds_the_counts(tmp_path):
    for key, value in (("negatives", -1), ("negatives", 10**6), ("drawn", 5)):
        path = tmp_path / "config.toml"
        path.write_text(f"[train]\n{key} = {value}\n")
        with pytest.raises(config.ConfigError, match=rf"train\.{key}: expected an integer between"):
            config.load(path)
