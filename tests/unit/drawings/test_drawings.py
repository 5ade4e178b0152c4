"""mnist_webgpu.drawings: digits and non-digits drawn as on the page, as the page's model sees them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mnist_webgpu.core import config
from mnist_webgpu.data.split import mnist_split
from mnist_webgpu.drawings import negatives, preprocess
from mnist_webgpu.drawings import pad as drawings


@pytest.fixture(scope="module")
def small(fast_config):
    return dataclasses.replace(
        fast_config, train=dataclasses.replace(fast_config.train, redrawn=30, negatives=40, drawn=24)
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
    s = mnist_split(small.train)
    picked = mnist.train_y[s.val]
    assert set(made.val_labels) <= set(picked.tolist())
    assert set(made.test_labels) <= set(mnist.test_y[: s.n_test].tolist())


def test_redrawn_training_digits_are_training_digits_drawn_as_on_the_page(small, made, mnist):
    s = mnist_split(small.train)
    assert made.train_digits.shape == (30, 28, 28) and made.train_digits.dtype == np.uint8
    pick = drawings.pick(30, s.n_train, drawings.SEEDS["redrawn"])
    assert pick.max() < s.n_train, "never a validation digit"
    assert np.array_equal(made.train_labels, mnist.train_y[pick])
    assert np.array_equal(
        made.train_digits, drawings.draw_digits(mnist.train_x[pick], drawings.SEEDS["redrawn"])
    )
    # MNIST-boxed, as the page boxes a drawing: ink inside, its long side about 20 px
    for image in made.train_digits:
        ys, xs = np.nonzero(image >= 64)
        assert 17 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 22
        assert min(ys.min(), xs.min()) >= 1 and max(ys.max(), xs.max()) <= 26
    # a pen's line, not MNIST's ink: its strokes are of one width, so its ink differs
    assert not np.array_equal(made.train_digits, mnist.train_x[pick])


def test_the_training_pool_is_mnist_then_redrawn_digits_then_non_digits_then_pen_digits(small, made, mnist):
    from mnist_webgpu.train import trainer as train

    n = mnist_split(small.train).n_train
    pen = len(made.train_pen)
    assert pen > 0
    seen = preprocess.upright(mnist.train_x[:n])
    pool_x, pool_y = train.training_pool(small, seen, mnist.train_y[:n], made)
    assert len(pool_x) == len(pool_y) == n + 30 + 40 + pen
    assert np.array_equal(pool_x[:n], seen) and np.array_equal(pool_y[:n], mnist.train_y[:n])
    assert np.array_equal(pool_x[n : n + 30], made.train_digits)
    assert np.array_equal(pool_y[n : n + 30], made.train_labels)
    assert (pool_y[n + 30 : n + 70] == 10).all()
    # last, where sample_indices draws the pen share from
    assert np.array_equal(pool_x[-pen:], made.train_pen) and np.array_equal(
        pool_y[-pen:], made.train_pen_labels
    )
    ten = dataclasses.replace(small, train=dataclasses.replace(small.train, negatives=0))
    assert len(train.training_pool(ten, seen, mnist.train_y[:n], made)[0]) == n + 30 + pen


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
    want = preprocess.render_strokes(
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
    for key, value in (("negatives", -1), ("negatives", 10**6), ("drawn", 5), ("redrawn", -1)):
        path = tmp_path / "config.toml"
        path.write_text(f"[train]\n{key} = {value}\n")
        with pytest.raises(config.ConfigError, match=rf"train\.{key}: expected an integer between"):
            config.load(path)
