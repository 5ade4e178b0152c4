"""The train stage: real tinygrad training on a slice of MNIST, through the real CLI and doit."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kits.projectkit import (
    FAST_CONFIG,
    ROOT,
    Project,
    run_stage,
    stage_command,
    stage_env,
    task_status,
    with_drawings,
)
from tinygrad import Context, Tensor
from tinygrad.codegen import to_program_cache
from tinygrad.nn.state import get_state_dict, safe_load

from mnist_webgpu.core import config
from mnist_webgpu.core.config import Augment
from mnist_webgpu.data.split import Split, mnist_split
from mnist_webgpu.train import cpu_patch as cpu_patches
from mnist_webgpu.train import trainer as train
from mnist_webgpu.train import verdict

FAST = FAST_CONFIG.read_text()
OUTPUTS = ("weights.safetensors", "misclassified.json", "metrics.json")


def project(tmp: Path, toml: str = FAST) -> Path:
    """A throwaway project directory holding only a config: outputs land under tmp/build."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.toml").write_text(toml)
    return tmp


def outputs_present(root: Path, name: str) -> list[str]:
    folder = root / "build" / "models" / name
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def trained_mlp(exported) -> Path:
    """The fast MLP as the train stage's CLI made it: the session's trained models (conftest's
    `exported`, the same fast config and drawings), not a second training of the same thing."""
    return exported


# --- pure pieces ----------------------------------------------------------------------


def test_split_keeps_validation_and_test_out_of_training(fast_config):
    sizes = mnist_split(fast_config.train)
    assert (sizes.n_train, sizes.n_val, sizes.n_test) == (5000, 1000, 2000)
    full = dataclasses.replace(fast_config, train=config.TrainConfig())
    assert mnist_split(full.train) == Split(55000, 5000, 10000)


def test_sampler_draws_only_training_indices(fast_config):
    n_train = mnist_split(fast_config.train).n_train
    drawn = np.concatenate([train.sample_indices(n_train, 4096).numpy() for _ in range(5)])
    assert drawn.min() >= 0 and drawn.max() < n_train
    # and it does reach the top of the range: the split, not the sampler, is the limit
    assert drawn.max() > n_train - 50 and drawn.min() < 50


def test_learning_rate_schedules(fast_config):
    mc = dataclasses.replace(fast_config.model("mlp"), lr=0.01, steps=1000, warmup_steps=100)
    for schedule in ("constant", "cosine", "onecycle"):
        m = dataclasses.replace(mc, lr_schedule=schedule)
        rates = train.learning_rates(m)
        assert rates[99] == pytest.approx(0.01)  # warmup ends at the peak
        assert (np.diff(rates[:100]) > 0).all()
        assert rates.max() == pytest.approx(0.01)
        assert rates.dtype == np.float64 and len(rates) == m.steps
    assert train.learning_rates(dataclasses.replace(mc, lr_schedule="constant"))[999] == pytest.approx(0.01)
    cosine = train.learning_rates(dataclasses.replace(mc, lr_schedule="cosine"))
    assert cosine[999] < 1e-6 and (np.diff(cosine[100:]) <= 0).all()
    assert train.learning_rates(dataclasses.replace(mc, warmup_steps=0))[0] == pytest.approx(0.01)
    # one-cycle warms up from lr/25, not from zero, and ends at lr/1e4
    onecycle = train.learning_rates(dataclasses.replace(mc, lr_schedule="onecycle"))
    assert onecycle[0] == pytest.approx(0.01 / 25 + (0.01 - 0.01 / 25) / 100)
    assert 0.01 / 1e4 <= onecycle[-1] < 2 * 0.01 / 1e4


def test_augment_without_transform_is_identity_and_with_it_moves_ink(mnist):
    images = Tensor(mnist.test_x[:16]).float().mul(1 / 255).unsqueeze(1)
    same = train.augment(images, Augment()).numpy()
    np.testing.assert_allclose(same, images.numpy(), atol=1e-5)

    moved = train.augment(images, Augment(shift=3, rotate=20, scale=0.2)).numpy()
    assert moved.shape == (16, 1, 28, 28)
    assert np.abs(moved - images.numpy()).mean() > 0.02
    # a digit stays a digit: most of its ink survives, nothing is invented
    ink, kept = images.numpy().sum(axis=(1, 2, 3)), moved.sum(axis=(1, 2, 3))
    assert np.all(kept > 0.5 * ink) and np.all(kept < 1.6 * ink)
    assert moved.min() >= 0 and moved.max() <= 1 + 1e-5


def test_interpolate_is_linear_between_neighbours_and_zero_outside():
    rng = np.random.default_rng(0)
    lines = rng.random((3, 5, 28)).astype(np.float32)
    at = rng.uniform(-2, 30, (3, 5, 40)).astype(np.float32)  # some beyond either edge
    at[0, 0, :4] = [0.0, 27.0, -1.0, 28.0]  # exact pixels and the first points outside
    # the definition: a tent of width one around each pixel, pixels beyond the edge are zero
    tent = np.maximum(0, 1 - np.abs(at[..., None] - np.arange(28)))
    expected = (tent * lines[:, :, None, :]).sum(-1)
    got = train.interpolate(Tensor(lines), Tensor(at)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0, 0, 2] == 0 and got[0, 0, 3] == 0


def test_the_schedule_reaches_the_jitted_optimizer(fast_config, mnist):
    mc = dataclasses.replace(fast_config.model("mlp"), lr_schedule="onecycle", warmup_steps=10)
    trainer = train.Trainer(
        mc, Tensor(mnist.train_x[:500]).realize(), Tensor(mnist.train_y[:500].astype(np.int32)), 500
    )
    assert trainer.schedule.tolist() == train.learning_rates(mc).tolist()
    rates = []
    for _ in range(6):  # through TinyJit's capture and into replays
        trainer.step()
        rates.append(trainer.optimizer.lr.item())
    np.testing.assert_allclose(rates, trainer.schedule[:6], rtol=1e-6)
    assert len(set(rates)) == 6  # warmup: a new rate every step
    # the jitted step reads the table on the device: zero it and the weights stand still
    trainer.schedule_table.assign(Tensor.zeros(mc.steps)).realize()
    before = trainer.snapshot()
    trainer.step()
    assert all(np.array_equal(before[k], v) for k, v in trainer.snapshot().items())
    trainer.schedule_table.assign(Tensor(trainer.schedule.astype(np.float32))).realize()
    trainer.step()
    assert any(not np.array_equal(before[k], v) for k, v in trainer.snapshot().items())


def test_past_the_schedules_end_the_last_rate_holds(fast_config, mnist):
    mc = dataclasses.replace(fast_config.model("mlp"), steps=3, warmup_steps=1)
    trainer = train.Trainer(
        mc, Tensor(mnist.train_x[:500]).realize(), Tensor(mnist.train_y[:500].astype(np.int32)), 500
    )
    for _ in range(5):
        trainer.step()
    assert trainer.optimizer.lr.item() == pytest.approx(trainer.schedule[-1], rel=1e-6)


# --- the stage, through the CLI ----------------------------------------------------------


# the trained_mlp fixture runs the train stage's CLI: 150 steps of the fast MLP
@pytest.mark.slow
def test_outputs_have_the_promised_shapes(trained_mlp, fast_config):
    folder = trained_mlp / "build" / "models" / "mlp"
    metrics = json.loads((folder / "metrics.json").read_text())
    mistakes = json.loads((folder / "misclassified.json").read_text())
    n_test = 2000

    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == n_test
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / n_test)
    assert len(metrics["per_class_accuracy"]) == 10
    assert metrics["per_class_accuracy"][3] == pytest.approx(matrix[3, 3] / matrix[3].sum())
    assert 0.8 < metrics["test_accuracy"] <= 1 and 0.8 < metrics["val_accuracy"] <= 1
    assert len(mistakes["indices"]) == n_test - np.trace(matrix)
    assert len(mistakes["labels"]) == len(mistakes["predictions"]) == len(mistakes["indices"])
    assert all(0 <= i < n_test for i in mistakes["indices"])
    assert all(a != b for a, b in zip(mistakes["labels"], mistakes["predictions"], strict=True))

    curves = metrics["curves"]
    assert curves["step"] == [50, 100, 150]
    assert len(curves["train_loss"]) == len(curves["val_accuracy"]) == 3
    assert metrics["val_accuracy"] == max(curves["val_accuracy"])
    assert (
        metrics["params"] == 784 * 64 + 64 + 64 * 11 + 11 and metrics["weight_bytes"] == 4 * metrics["params"]
    ), "ten digits and 'not a digit'"
    assert metrics["steps"] == 150 and metrics["device"] == "CPU" and metrics["tinygrad_version"] == "0.14.0"
    cfg = config.load(trained_mlp / "config.toml")
    settings = config.training_settings(cfg.train, cfg.model("mlp"))
    assert metrics["config"] == json.loads(json.dumps(settings))
    assert metrics["config_hash"] == config.settings_hash(settings)

    weights = safe_load(str(folder / "weights.safetensors"))
    from mnist_webgpu.models import zoo as models

    expected = get_state_dict(models.build(fast_config.model("mlp"), fast_config.train.outputs))
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in expected.items()}


def test_the_decline_rule_is_set_on_validation_and_the_drawn_figures_reported(trained_mlp):
    metrics = json.loads((trained_mlp / "build/models/mlp/metrics.json").read_text())
    rule, val, test = metrics["decline"], metrics["drawn_val"], metrics["drawn_test"]
    assert 0.25 <= rule["temperature"] <= 8 and 0 < rule["threshold"] < 1
    # the threshold declines at most DIGITS_DECLINED (1%) of the 200 drawn validation digits and of the
    # validation writers' pen digits, each, and that share of one of them
    pen = metrics["pen_val"]
    assert val["digits"] == test["digits"] == 200 and pen["digits"] > 400
    slack = {"drawn": 1 / val["digits"], "pen": 1 / pen["digits"]}
    shares = {"drawn": val["declined"], "pen": pen["declined"]}
    share = verdict.DIGITS_DECLINED
    assert all(shares[s] <= share + slack[s] for s in shares), shares
    assert any(shares[s] == pytest.approx(share, abs=slack[s]) for s in shares), shares
    assert val["nondigits"] == test["nondigits"] == 200
    # 150 steps on 5,000 digits and 600 non-digits already refuse most non-digits, and read
    # most drawn digits
    assert test["nondigits_declined"] > 0.4 and test["accuracy"] > 0.6
    assert set(test["nondigits_declined_by_kind"]) == {
        "cross", "dash", "dots", "fragment", "letter", "pair", "scribble", "shape"
    }  # fmt: skip


@pytest.mark.slow
def test_loss_decreases(trained_mlp):
    curves = json.loads((trained_mlp / "build/models/mlp/metrics.json").read_text())["curves"]
    assert curves["train_loss"][-1] < 0.7 * curves["train_loss"][0]


@pytest.mark.slow
def test_same_seed_gives_the_same_weights(trained_mlp, tmp_path, mnist_cache, fast_drawings):
    again = with_drawings(project(tmp_path / "again"), fast_drawings)
    assert run_stage(again, "train", "mlp", cache=mnist_cache).returncode == 0
    first = (trained_mlp / "build/models/mlp/weights.safetensors").read_bytes()
    second = (again / "build/models/mlp/weights.safetensors").read_bytes()
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


@pytest.mark.slow
def test_killed_training_leaves_no_complete_looking_outputs(trained_mlp, tmp_path, mnist_cache):
    root = project(
        tmp_path, FAST.replace("steps = 150", "steps = 5000").replace("eval_every = 50", "eval_every = 20")
    )
    # a complete set from an earlier run: the new run must not leave it looking current
    shutil.copytree(trained_mlp / "build", root / "build")
    proc = subprocess.Popen(
        stage_command("train", "mlp"),
        cwd=root,
        env=stage_env(root, mnist_cache),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if re.match(r"mlp: step \d+/5000", line):
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert outputs_present(root, "mlp") == []


@pytest.mark.parametrize(
    ("edit", "args", "message"),
    [
        (None, ("train", "nosuch"), r"models\.nosuch: no such model \(known: mlp, cnn, resnet\)"),
        (
            ("batch_size = 64", "batch_size = 6000"),
            ("train", "mlp"),
            r"models\.mlp\.batch_size: expected at most",
        ),
        (("steps = 150", "steps = 0"), ("train", "mlp"), r"models\.mlp\.steps: expected an integer >= 1"),
        (("lr = 0.003", "lr = -0.1"), ("train", "mlp"), r"models\.mlp\.lr: expected a number > 0"),
        (("[train]", '[train]\ndevice = "NOSUCH"'), ("train", "mlp"), r"train\.device: tinygrad cannot use"),
    ],
    ids=["unknown-model", "batch-too-large", "zero-steps", "negative-lr", "bad-device"],
)
def test_bad_input_is_one_line_and_no_outputs(tmp_path, mnist_cache, edit, args, message):
    toml = FAST.replace(*edit, 1) if edit else FAST
    root = project(tmp_path, toml)
    result = run_stage(root, *args, cache=mnist_cache)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and re.search(message, result.stderr), result.stderr
    assert not (root / "build").exists()


def test_missing_data_names_the_file(tmp_path):
    root = project(tmp_path / "project")
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    result = run_stage(root, "train", "mlp", cache=empty)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{empty / 'train-images-idx3-ubyte'}: missing" in result.stderr
    assert not (root / "build").exists()


# --- doit: only what changed is retrained ------------------------------------------------

TINY_MODELS = """
[models.mlp]
arch = "mlp"
widths = [16]
lr = 0.003
lr_schedule = "constant"
batch_size = 32
steps = 20
eval_every = 10
seed = 7

[models.cnn]
arch = "cnn"
widths = [2]
lr = 0.003
lr_schedule = "constant"
batch_size = 16
steps = 4
eval_every = 2
seed = 7
"""


@pytest.mark.slow
def test_doit_retrains_only_the_model_whose_config_changed(tmp_path, mnist_cache):
    head = FAST.split("[models.mlp]")[0]
    tail = "[site]" + FAST.split("[site]")[1]
    project = Project.copy(tmp_path / "project", mnist_cache, head + TINY_MODELS + tail)

    def doit() -> dict[str, str]:
        status = task_status(project.doit("train").stdout)
        return {name: s for name, s in status.items() if name.startswith("train:")}

    assert doit() == {"train:mlp": ".", "train:cnn": "."}
    assert doit() == {"train:mlp": "--", "train:cnn": "--"}
    project.edit("config.toml", "lr = 0.003", "lr = 0.002")
    assert doit() == {"train:mlp": ".", "train:cnn": "--"}
    metrics = json.loads((project.root / "build/models/mlp/metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.002


# --- the fast path: same training, fewer seconds -------------------------------------------


# two CNN trainers in this process: tinygrad builds every training kernel twice (~1 min)
@pytest.mark.slow
def test_the_fast_cpu_path_follows_the_plain_loss_curve(fast_config, mnist, monkeypatch):
    """The fast CPU path (im2col, matmul tiles, split kernels run on two threads, no split reduces)
    against plain conv2d in tinygrad's own kernels, run one part after another."""
    mc = fast_config.model("cnn")
    x, y = Tensor(mnist.train_x[:500]).realize(), Tensor(mnist.train_y[:500].astype(np.int32)).realize()
    curves = {}
    for fast in (False, True):
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(cpu_patches, "fast_cpu_kernels", contextlib.nullcontext)
            # tinygrad keeps each kernel it built for this process: build the fast path's afresh
            to_program_cache.clear()
            trainer = train.Trainer(mc, x, y, 500, im2col=fast)
            totals = []
            with Context(NUM_CPU_THREADS=2):  # the thread pool runs even on a one-core machine
                for _ in range(8):
                    trainer.step()
                    totals.append(trainer.loss_total.item())
        curves[fast] = np.diff([0.0, *totals])  # the loss of each step
    assert curves[False][-1] < curves[False][0]  # it did train
    np.testing.assert_allclose(curves[True], curves[False], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("side", [14, 7])  # even: the reshape; odd: tinygrad's pooling
def test_the_trainers_max_pool_gives_max_pool2d_values_and_gradients(side):
    from mnist_webgpu.models.zoo import max_pool_2x2

    data = np.random.default_rng(side).normal(size=(2, 3, side, side)).astype(np.float32)
    results = []
    for pool in (max_pool_2x2, lambda t: t.max_pool2d(2)):
        x = Tensor(data)
        x.requires_grad = True
        out = pool(x)
        (out * out).sum().backward()
        results.append((out.numpy(), x.grad.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


def kernels_run(capsys, compute) -> list[str]:
    capsys.readouterr()
    with Context(DEBUG=2):
        compute()
    return re.findall(r"\b([ER]_[0-9_]+)", re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out), re.I)


def test_matmul_tiles_give_a_matrix_product_the_largest_tile_that_divides(capsys):
    # 64x96 @ 96x32 takes 16x8: 4x8 blocks of 16 columns by 8 rows, the 96 sums in a loop
    a, b = Tensor.rand(64, 96).realize(), Tensor.rand(96, 32).realize()
    assert "r_8_2_16_8_96" not in kernels_run(capsys, lambda: (a @ b).realize())
    to_program_cache.clear()  # or tinygrad hands back the kernel it built above
    with cpu_patches.matmul_tiles(threads=1):
        assert "r_8_2_16_8_96" in kernels_run(capsys, lambda: (a @ b).realize())
        c = Tensor.rand(96, 12).realize()  # 12 columns: no tile divides them, tinygrad's opts stay
        narrow = kernels_run(capsys, lambda: (a @ c).realize())
        assert narrow and not any(re.search(r"_(16_8|8_4)_96$", k) for k in narrow)
        d = Tensor.rand(96, 8).realize()  # 8 columns: the 8x4 tile
        assert "r_16_8_4_96" in kernels_run(capsys, lambda: (a @ d).realize())
    elementwise = kernels_run(capsys, lambda: (a * 2).realize())
    with cpu_patches.matmul_tiles(threads=1):
        assert kernels_run(capsys, lambda: (a * 3).realize()) == elementwise  # others keep tinygrad's opts


GATHER_AND_SUM = """
import sys
import numpy as np
from mnist_webgpu.core import config, patching
patching.apply_tinygrad_env(config.load(sys.argv[1]))  # what the train stage does first
from tinygrad import Context, Tensor
images = Tensor(np.arange(60000 * 16, dtype=np.int32).reshape(60000, 16)).realize()
idx, long = Tensor([59999, 0, 123, 31000]).realize(), Tensor.rand(100352).realize()
with Context(DEBUG=2):
    print("== gather", flush=True)
    rows = images[idx].numpy()
    print("== sum", flush=True)
    long.sum().realize()
print("== rows", rows[:, 0].tolist(), flush=True)
"""


def test_the_batch_gather_stays_one_kernel_while_longer_sums_still_split(tmp_path):
    """A gather over 60,000 rows, as train_x[idx] is, against tinygrad splitting it in two."""
    (tmp_path / "config.toml").write_text(FAST)
    env = stage_env(tmp_path, tmp_path / "cache")  # this checkout's src, not an installed copy
    env.pop("REDUCEOP_SPLIT_THRESHOLD", None)
    out = subprocess.run(
        [sys.executable, "-c", GATHER_AND_SUM, str(tmp_path / "config.toml")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    ).stdout
    sections = dict(part.split("\n", 1) for part in re.sub(r"\x1b\[[0-9;]*m", "", out).split("== ")[1:])
    kernels = {name: re.findall(r"\*\*\* CPU +\d+ ([Er]_\w+)", text) for name, text in sections.items()}
    assert len(kernels["gather"]) == 1
    assert len(kernels["sum"]) == 2
    assert "[959984, 0, 1968, 496000]" in out  # the first column of rows 59999, 0, 123, 31000


def kernel_source(capsys, compute) -> str:
    capsys.readouterr()
    to_program_cache.clear()
    with Context(DEBUG=4, CACHELEVEL=0):  # build afresh, so that tinygrad prints the C it compiles
        compute()
    return capsys.readouterr().out


def test_wide_vector_loads_let_a_tiled_product_read_eight_floats_at_once(capsys):
    a, b = Tensor.rand(64, 96).realize(), Tensor.rand(96, 32).realize()
    with cpu_patches.matmul_tiles(threads=1):
        assert "ext_vector_type(8)" not in kernel_source(capsys, lambda: (a @ b).realize())
        with cpu_patches.wide_vector_loads():
            products = []
            wide = kernel_source(capsys, lambda: products.append((a @ b).numpy()))
    assert "float8" in wide and "ext_vector_type(8)" in wide
    np.testing.assert_allclose(products[0], a.numpy() @ b.numpy(), rtol=1e-5)


def kernel_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sum(conn.execute(f"SELECT COUNT(*) FROM '{t}'").fetchone()[0] for t in tables)


@pytest.mark.slow
def test_the_kernel_cache_lives_in_the_project_cache_and_is_reused(tmp_path, mnist_cache, fast_drawings):
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in mnist_cache.iterdir():
        if f.is_file():
            (cache / f.name).symlink_to(f)
    head = FAST.split("[models.mlp]")[0]
    root = with_drawings(project(tmp_path / "project", head + TINY_MODELS), fast_drawings)
    assert run_stage(root, "train", "mlp", cache=cache).returncode == 0
    db = cache / "tinygrad" / "cache.db"
    assert db.is_file()
    compiled = kernel_rows(db)
    assert compiled > 0
    assert run_stage(root, "train", "mlp", cache=cache).returncode == 0
    assert kernel_rows(db) == compiled  # the second build compiled nothing new
