"""Train one model with tinygrad: the batches, the step, the checkpoint chosen on validation.

The whole data set lives in device tensors; each jitted step samples its batch, augments
it and updates the weights on the device. Host round trips happen only at evaluation
points. The checkpoint is chosen on the validation split (the last val_size images of
the training set); the test set is never read here (train/stage.py scores it once).

Import this module only after the device is chosen (`DEV` is read when tinygrad loads).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes, nn
from tinygrad.nn.state import get_state_dict

from mnist_webgpu.core import layout
from mnist_webgpu.core.config import Augment, Config, ModelConfig
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.core.progress import Progress
from mnist_webgpu.data import mnist as data
from mnist_webgpu.data.split import Split, mnist_split
from mnist_webgpu.drawings import pad as drawings
from mnist_webgpu.drawings import preprocess
from mnist_webgpu.models import zoo as models
from mnist_webgpu.train import cpu_patch, verdict

EVAL_CHUNK = 1000  # images per jitted evaluation call: one compiled graph, little memory
CENTRE = 13.5  # the middle of a 28-pixel axis, in pixel-centre coordinates


class TrainError(PipelineError):
    """Training cannot start or finish; the message says what and where."""


def check_data(cache_dir: Path) -> None:
    for path in data.paths(cache_dir).values():
        if (problem := data.file_problem(path)) is not None:
            raise TrainError(
                f"MNIST file {path}: {problem}; run `python -m mnist_webgpu data` (or `doit data`) first"
            )


def check_device() -> str:
    try:
        Tensor([1.0]).realize()
    except Exception as exc:  # tinygrad raises many kinds here; all mean "this device is unusable"
        raise TrainError(f"train.device: tinygrad cannot use device {Device.DEFAULT!r} ({exc})") from None
    return Device.DEFAULT


# --- pure pieces: schedule, sampling, augmentation --------------------------------------


def learning_rates(mc: ModelConfig) -> np.ndarray:
    """The rate of every 0-based step, in float64: linear warmup, then constant or a cosine decay.

    "onecycle" differs from "cosine" in where it starts and ends: warmup from lr/25 and
    decay to lr/1e4 (as in Smith's one-cycle policy), rather than from and to zero. An array,
    never a Python list: steps may be millions.
    """
    steps = np.arange(mc.steps, dtype=np.float64)
    onecycle = mc.lr_schedule == "onecycle"
    start = mc.lr / 25 if onecycle else 0.0
    if mc.lr_schedule == "constant":
        rates = np.full(mc.steps, mc.lr, dtype=np.float64)
    else:
        floor = mc.lr / 1e4 if onecycle else 0.0
        progress = (steps - mc.warmup_steps) / max(mc.steps - mc.warmup_steps, 1)
        rates = floor + (mc.lr - floor) * 0.5 * (1 + np.cos(math.pi * progress))
    warm = steps < mc.warmup_steps
    if mc.warmup_steps:
        rates[warm] = start + (mc.lr - start) * (steps[warm] + 1) / mc.warmup_steps
    return rates


def sample_indices(n_train: int, batch_size: int, n_pen: int = 0, pen_share: float = 0.0) -> Tensor:
    """Random training indices, drawn on the device: never a validation image. With a pen
    share, that fraction of the batch comes uniformly from the pool's last `n_pen` images (the
    real pen digits), the rest uniformly from the others: a few thousand pen digits weigh as
    much as the configured share, however large the rest of the pool."""
    n_from_pen = round(batch_size * pen_share) if n_pen else 0
    rest = Tensor.randint(batch_size - n_from_pen, low=0, high=n_train - n_pen)
    if not n_from_pen:
        return rest
    return rest.cat(Tensor.randint(n_from_pen, low=n_train - n_pen, high=n_train))


def augment(x: Tensor, aug: Augment) -> Tensor:
    """Random rotation, scale and shift about the image centre, linear interpolation, zeros outside.

    Each output pixel pulls from the source point its inverse transform lands on. The
    affine map is resampled in two 1-D passes (Catmull-Smith): along rows, then along
    columns, each reading the two neighbours of a point on one 28-pixel axis. That is
    far cheaper than full bilinear weights per output pixel (which cost ~half of an MLP
    step on the CPU) and matches it for the small rotations used here.
    """
    b = x.shape[0]
    angle = (Tensor.rand(b, 1, 1) * 2 - 1) * math.radians(aug.rotate)
    scale = 1 + (Tensor.rand(b, 1, 1) * 2 - 1) * aug.scale
    dy, dx = [(Tensor.rand(b, 1, 1) * 2 - 1) * aug.shift for _ in range(2)]
    # per image, in kernels of their own: fused, the polynomial sin/cos ran once per pixel
    cos, sin = (angle.cos() / scale).contiguous(), (angle.sin() / scale).contiguous()
    # inverse map, centred coordinates: src_y = cos*(oy-dy) + sin*(ox-dx), src_x = cos*(ox-dx) - sin*(oy-dy)
    axis = Tensor.arange(28).float() - CENTRE
    # pass 1, per source row sy: the x to read for output column ox, with oy solved from sy
    sy, ox = axis.reshape(1, 28, 1), axis.reshape(1, 1, 28) - dx
    oy = (sy - sin * ox) / cos
    src_x = cos * ox - sin * oy + CENTRE  # (b, source row, out column)
    rows = interpolate(x.reshape(b, 28, 28), src_x)  # (b, source row, out column)
    # pass 2, per output column: the source row to read for output row oy
    oy, ox = axis.reshape(1, 1, 28) - dy, axis.reshape(1, 28, 1) - dx
    src_y = cos * oy + sin * ox + CENTRE  # (b, out column, out row)
    out = interpolate(rows.permute(0, 2, 1), src_y)  # (b, out column, out row)
    return out.permute(0, 2, 1).reshape(b, 1, 28, 28)


def interpolate(lines: Tensor, at: Tensor) -> Tensor:
    """Linear interpolation along the last axis of (b, n, 28) `lines` at (b, n, m) positions; 0 outside.

    Two gathers, which tinygrad turns into indexed loads; the weighted sum over all 28
    pixels it replaces (a tent of width one around each) cost ~3x as much on the CPU.
    """
    left = at.floor()
    right_weight = at - left

    def pixel(i: Tensor) -> Tensor:
        inside = (i >= 0) * (i <= 27)
        return inside.where(lines.gather(2, i.clip(0, 27).cast(dtypes.int32)), 0.0)

    return pixel(left) * (1 - right_weight) + pixel(left + 1) * right_weight


def augments(aug: Augment) -> bool:
    return aug.shift > 0 or aug.rotate > 0 or aug.scale > 0


def make_optimizer(mc: ModelConfig, params: list[Tensor]):
    if mc.optimizer == "adam":
        return nn.optim.Adam(params, lr=mc.lr)
    if mc.optimizer == "adamw":
        return nn.optim.AdamW(params, lr=mc.lr, weight_decay=mc.weight_decay)
    return nn.optim.SGD(params, lr=mc.lr, momentum=0.9, nesterov=True, weight_decay=mc.weight_decay)


# --- training ---------------------------------------------------------------------------


def pixels(images: Tensor) -> Tensor:
    """uint8 (B, 28, 28) -> the models' float (B, 1, 28, 28) in [0, 1]."""
    return images.float().mul(1 / 255).unsqueeze(1)


class Trainer:
    def __init__(
        self,
        mc: ModelConfig,
        train_x: Tensor,
        train_y: Tensor,
        n_train: int,
        im2col: bool = True,
        outputs: int = 10,
        n_pen: int = 0,
        pen_share: float = 0.0,
    ):
        self.mc = mc
        Tensor.manual_seed(mc.seed)
        np.random.seed(mc.seed)
        self.model = models.build(mc, outputs)
        # same maths, faster kernels on the CPU (models.conv3x3_im2col); the export is untouched
        self.im2col = im2col
        self.state = get_state_dict(self.model)
        self.optimizer = make_optimizer(mc, nn.state.get_parameters(self.model))
        # summed on the device every step; read back only at evaluation points
        self.loss_total = Tensor.zeros(1).contiguous().realize()
        # the whole schedule lives on the device, read at the step count: a rate handed in from
        # Python each step cost ~2.7 ms of tensor creation and jit input handling on the CPU
        self.schedule = learning_rates(mc)
        self.schedule_table = Tensor(self.schedule.astype(np.float32)).realize()
        self.steps_done = Tensor.zeros((), dtype=dtypes.int32).contiguous().realize()
        self.train_x, self.train_y, self.n_train = train_x, train_y, n_train
        self.n_pen, self.pen_share = n_pen, pen_share
        # what the step really did, filled in while it is traced (sweeps record it)
        self.used: dict[str, Any] = {"seed": mc.seed}
        self.jit_step = TinyJit(self._step)
        self.jit_predict = TinyJit(self._predict)
        self.jit_logits = TinyJit(self._logits)

    # TinyJit builds the step's kernels after the traced call returns, and runs them on every
    # call: both must happen inside the CPU kernel settings
    def step(self) -> Tensor:
        with cpu_patch.fast_cpu_kernels(), models.im2col(self.im2col):
            return self.jit_step()

    def _step(self) -> Tensor:
        with Context(TRAINING=1):
            # past the schedule's end (benchmarks run on) the last rate holds
            self.optimizer.lr.assign(self.schedule_table[self.steps_done.minimum(self.mc.steps - 1)])
            idx = sample_indices(self.n_train, self.mc.batch_size, self.n_pen, self.pen_share)
            x = pixels(self.train_x[idx])
            aug = self.mc.augment if augments(self.mc.augment) else Augment()  # all zero = none
            if augments(aug):
                x = augment(x, aug)
            logits = self.model(x)
            loss = logits.sparse_categorical_crossentropy(
                self.train_y[idx], label_smoothing=self.mc.label_smoothing
            )
            self.used.update(
                batch_size=x.shape[0],
                augment=dataclasses.asdict(aug),
                label_smoothing=self.mc.label_smoothing,
            )
            self.optimizer.zero_grad()
            loss.backward()
            return self.loss_total.assign(self.loss_total + loss.detach()).realize(
                self.steps_done.assign(self.steps_done + 1), *self.optimizer.schedule_step()
            )

    def _predict(self, images: Tensor) -> Tensor:
        # the digit a model names: "not a digit" is the page's decline rule, not an argmax
        return self.model(pixels(images))[:, :10].argmax(1).realize()

    def _logits(self, images: Tensor) -> Tensor:
        return self.model(pixels(images)).realize()

    def _chunked(self, run, images: np.ndarray) -> np.ndarray:
        """`run` over uint8 (N, 28, 28) images in fixed-size chunks: one jitted graph for all."""
        out = []
        for start in range(0, len(images), EVAL_CHUNK):
            chunk = images[start : start + EVAL_CHUNK]
            padded = np.zeros((EVAL_CHUNK, 28, 28), np.uint8)
            padded[: len(chunk)] = chunk
            with cpu_patch.fast_cpu_kernels(), models.im2col(self.im2col):
                out.append(run(Tensor(padded)).numpy()[: len(chunk)].copy())
        return np.concatenate(out)

    def predictions(self, images: np.ndarray) -> np.ndarray:
        """Predicted digits for uint8 (N, 28, 28) images."""
        return self._chunked(self.jit_predict, images)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """All the model's outputs for uint8 (N, 28, 28) images, float32."""
        return self._chunked(self.jit_logits, images)

    def snapshot(self) -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in self.state.items()}

    def restore(self, weights: dict[str, np.ndarray]) -> None:
        # assign, not replace: the jitted graphs hold these very buffers
        for k, v in self.state.items():
            v.assign(Tensor(weights[k], device=v.device)).realize()


@dataclass
class Fitted:
    """A finished training run, its checkpoint chosen on the validation split."""

    trainer: Trainer
    curves: dict[str, list]
    val_accuracy: float
    best_step: int
    best_weights: dict[str, np.ndarray]
    train_seconds: float
    sizes: Split
    device: str
    drawn: drawings.Drawings
    val_x: np.ndarray  # the validation digits as the models see them (preprocess.upright)
    mnist_val_accuracy: float  # at the chosen step; val_accuracy blends in the pen writers

    @property
    def lr_fed(self) -> np.ndarray:
        """The rate handed to the optimizer at each step: the trainer's whole schedule."""
        return self.trainer.schedule

    @property
    def params(self) -> int:
        return self.trainer.model.params()


def training_pool(
    cfg: Config, train_x: np.ndarray, train_y: np.ndarray, drawn: drawings.Drawings
) -> tuple[np.ndarray, np.ndarray]:
    """What the batches draw from: MNIST's training digits (`train_x`, as the models see them),
    training digits drawn as a pen draws them, (with an 11th output) the non-digits, then the
    training writers' real pen digits, last, where sample_indices finds them."""
    pool_x = [train_x, drawn.train_digits]
    pool_y = [train_y, drawn.train_labels]
    if cfg.train.outputs > 10:
        pool_x.append(drawn.train_negatives)
        pool_y.append(np.full(len(drawn.train_negatives), verdict.NOT_A_DIGIT, np.uint8))
    pool_x.append(drawn.train_pen)
    pool_y.append(drawn.train_pen_labels)
    return np.concatenate(pool_x), np.concatenate(pool_y).astype(np.uint8)


def validation_score(mnist_accuracy: float, pen_accuracy: float | None) -> float:
    """What chooses the checkpoint (and a sweep's trials): MNIST's validation digits and the
    validation writers' pen digits weigh alike, when the pool holds pen digits."""
    return mnist_accuracy if pen_accuracy is None else (mnist_accuracy + pen_accuracy) / 2


def fit(cfg: Config, mc: ModelConfig, label: str, mnist: data.Mnist, device: str, on_eval=None) -> Fitted:
    """Train `mc` from scratch; keep the weights of its best validation score. No test images.

    `on_eval(step, val_accuracy, seconds)` is called at each evaluation point; a sweep
    reports there and stops a lagging trial by raising (Optuna's pruning).
    """
    sizes = mnist_split(cfg.train)
    n_seen = sizes.n_train + sizes.n_val
    drawn = drawings.read(layout.PROJECT.drawings, drawings.settings(cfg))
    # the training and validation digits as the models see every drawing: deskewed
    seen_x = preprocess.upright(mnist.train_x[:n_seen])
    pool_x, pool_y = training_pool(cfg, seen_x[: sizes.n_train], mnist.train_y[: sizes.n_train], drawn)
    train_x = Tensor(np.ascontiguousarray(pool_x)).realize()
    train_y = Tensor(pool_y.astype(np.int32)).realize()
    val_x, val_y = seen_x[sizes.val], mnist.train_y[sizes.val]

    n_pen = len(drawn.train_pen)
    trainer = Trainer(
        mc,
        train_x,
        train_y,
        len(pool_x),
        im2col=cfg.train.im2col,
        outputs=cfg.train.outputs,
        n_pen=n_pen,
        pen_share=cfg.train.pen_share,
    )
    curves: dict[str, list] = {"step": [], "train_loss": [], "val_accuracy": [], "pen_val_accuracy": []}
    best_score, best_step, best_weights, best_mnist = -1.0, 0, None, 0.0
    progress = Progress(label, mc.steps)
    loss_seen, last_eval = 0.0, 0
    started = time.monotonic()
    try:
        for step in range(mc.steps):
            trainer.step()
            done = step + 1
            progress.step(done)
            if done % mc.eval_every and done != mc.steps:
                continue
            loss_total = trainer.loss_total.item()
            train_loss = (loss_total - loss_seen) / (done - last_eval)
            loss_seen, last_eval = loss_total, done
            val_accuracy = float((trainer.predictions(val_x) == val_y).mean())
            pen_accuracy = float((trainer.predictions(drawn.val_pen) == drawn.val_pen_labels).mean())
            score = validation_score(val_accuracy, pen_accuracy if n_pen else None)
            curves["step"].append(done)
            curves["train_loss"].append(train_loss)
            curves["val_accuracy"].append(val_accuracy)
            curves["pen_val_accuracy"].append(pen_accuracy)
            progress.report(done, train_loss, val_accuracy, pen_accuracy)
            if not math.isfinite(train_loss):
                raise TrainError(
                    f"models.{mc.name}: training diverged (loss {train_loss}) at step {done}; lower lr"
                )
            if score > best_score:
                best_score, best_step, best_weights, best_mnist = (
                    score,
                    done,
                    trainer.snapshot(),
                    val_accuracy,
                )
            if on_eval is not None:
                on_eval(done, score, time.monotonic() - started)
    finally:
        progress.close()
    train_seconds = time.monotonic() - started
    return Fitted(
        trainer,
        curves,
        best_score,
        best_step,
        best_weights,
        train_seconds,
        sizes,
        device,
        drawn,
        val_x,
        best_mnist,
    )


def effective_hyperparameters(fitted: Fitted) -> dict[str, Any]:
    """The hyperparameters as the trainer used them, read back from the live objects.

    A knob the trainer ignored shows its real value here, not the configured one: the
    original project's sweep changed a learning rate that never reached its optimizer.
    """
    t = fitted.trainer
    opt = t.optimizer
    if isinstance(opt, nn.optim.LAMB):
        optimizer = ("adamw" if opt.wd else "adam") if opt.adam else "lamb"
    else:
        optimizer = "sgd" if isinstance(opt, nn.optim.LARS) else type(opt).__name__.lower()
    mc = t.mc
    return {
        "arch": t.model.arch,
        "widths": t.model.widths(),
        "optimizer": optimizer,
        "lr": float(fitted.lr_fed.max()),  # the peak rate the optimizer was given
        "lr_first": float(fitted.lr_fed[0]),
        "lr_last": float(f"{opt.lr.item():.7g}"),  # read back from the optimizer (float32)
        # learning_rates() reads these two; lr_first/lr_last show what they did
        "lr_schedule": mc.lr_schedule,
        "warmup_steps": mc.warmup_steps,
        "weight_decay": float(getattr(opt, "wd", 0.0)),
        "label_smoothing": t.used["label_smoothing"],
        "batch_size": t.used["batch_size"],
        "steps": len(fitted.lr_fed),
        "eval_every": fitted.curves["step"][0] if fitted.curves["step"] else mc.eval_every,
        "seed": t.used["seed"],
        "augment": t.used["augment"],
    }
