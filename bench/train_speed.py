"""Training speed: our tinygrad trainer against the same model in PyTorch, on the CPU.

For each model in config.toml: the steady-state milliseconds per training step of the
real trainer (`train.Trainer`, the code `doit build` runs, with the train stage's
tinygrad settings) and of the same architecture, batch size, optimizer, schedule,
augmentation and data in PyTorch. Steps run in interleaved blocks (tinygrad, torch,
tinygrad, torch ...) in one process, so a noisy shared machine slows both alike and the
ratio holds. Compile/warm-up time is reported separately, and (unless --quick) the
seconds of training each framework needs to reach a validation accuracy target. It names
the processor (model and widest vector set) and the trainer's path, and puts the step's
GFLOP/s (tinygrad's own operation count) beside numpy's sgemm rate measured in the same run.

    python bench/train_speed.py [--quick] [--json] [--models mlp cnn]

PyTorch is a bench-only dependency: `pip install -e '.[torch-bench]'`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mnist_webgpu.core import config, machine
from mnist_webgpu.core import patching as patches
from mnist_webgpu.data import mnist as data
from mnist_webgpu.data.split import mnist_split

TARGETS = {"mlp": 0.98, "cnn": 0.99}  # validation accuracy for the time-to-accuracy figure


def trainer_path() -> str:
    """Which code path the tinygrad figures measure: device, compiler, patches, threads."""
    from importlib.metadata import version

    from tinygrad import Device
    from tinygrad.helpers import NUM_CPU_THREADS

    device = Device.DEFAULT
    compiler = f", {os.environ.get('CC', 'clang')}" if device.startswith("CPU") else ""
    fenced = "patches on" if patches.enabled() else f"patches off ({patches.SWITCH}=0)"
    return f"tinygrad {version('tinygrad')} {device}{compiler}, {fenced}, {NUM_CPU_THREADS.value} threads"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", help="model names from [models] (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer rounds, no time-to-accuracy: under 5 minutes")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    p.add_argument("--rounds", type=int, help="interleaved blocks per framework")
    p.add_argument("--accuracy", action="store_true", help="time to accuracy even with --quick")
    return p.parse_args(argv)


def block_steps(ms_guess: float, quick: bool) -> int:
    """Steps per block: about 1 s (quick) or 3 s of work, at least 3."""
    return max(3, int((1000 if quick else 3000) / ms_guess))


# --- PyTorch twins of models/zoo.py and train.augment -----------------------------------------


def torch_model(torch, mc, outputs: int):
    """The PyTorch twin of a zoo model: written per architecture, since the comparison needs
    PyTorch's own layers; a model without one is not compared."""
    from mnist_webgpu.models import zoo

    nn = torch.nn
    mean, std = zoo.MNIST_MEAN, zoo.MNIST_STD

    class Normalize(nn.Module):
        def forward(self, x):
            return (x - mean) / std

    if mc.arch == "mlp":
        sizes = [784, *mc.widths, outputs]
        layers: list = [Normalize(), nn.Flatten()]
        for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(sizes[-2], outputs))
    if mc.arch == "resnet":
        return torch_resnet(torch, mc, outputs, Normalize())
    if mc.arch != "cnn":
        raise SystemExit(
            f"train_speed: no PyTorch twin of arch {mc.arch!r} (models.{mc.name}); write one here"
        )
    channels, layers = [1, *mc.widths], [Normalize()]
    for a, b in zip(channels[:-1], channels[1:], strict=True):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    side = 28 >> len(mc.widths)
    head = zoo.CNN.HEAD
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(mc.widths[-1] * side * side, head),
        nn.ReLU(),
        nn.Linear(head, outputs),
    )


def torch_resnet(torch, mc, outputs: int, normalize):
    nn = torch.nn

    def conv_norm(a: int, b: int) -> list:
        return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b, eps=1e-5, momentum=0.1)]

    class Residual(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.inner = nn.Sequential(*conv_norm(c, c), nn.ReLU(), *conv_norm(c, c))

        def forward(self, x):
            return (x + self.inner(x)).relu()

    channels, layers = [1, *mc.widths], [normalize]
    for a, b in zip(channels[:-1], channels[1:], strict=True):
        layers += [*conv_norm(a, b), nn.ReLU(), nn.MaxPool2d(2)]
    last = mc.widths[-1]
    return nn.Sequential(
        *layers, Residual(last), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, outputs)
    )


def torch_augment(torch, x, aug):
    """The same random affine map as train.augment, through affine_grid/grid_sample."""
    b = x.shape[0]

    def uniform(limit):
        return (torch.rand(b) * 2 - 1) * limit

    angle, scale = uniform(math.radians(aug.rotate)), 1 + uniform(aug.scale)
    dy, dx = uniform(aug.shift), uniform(aug.shift)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    half = 13.5  # align_corners=True: -1 and 1 are the centres of pixels 0 and 27
    theta = torch.stack(
        [
            torch.stack([cos, -sin, (-cos * dx + sin * dy) / half], 1),
            torch.stack([sin, cos, (-sin * dx - cos * dy) / half], 1),
        ],
        1,
    )
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=True)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=True)


class TorchTrainer:
    def __init__(self, torch, mc, train_x: np.ndarray, train_y: np.ndarray, outputs: int = 10):
        from mnist_webgpu.train.trainer import augments

        self.torch, self.mc = torch, mc
        torch.manual_seed(mc.seed)
        self.model = torch_model(torch, mc, outputs)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=mc.lr)
        self.x, self.y = torch.from_numpy(train_x.copy()), torch.from_numpy(train_y.astype(np.int64))
        self.augment = augments(mc.augment)
        self.loss_total = torch.zeros(())

    def step(self, lr: float) -> None:
        torch = self.torch
        for group in self.opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(self.x), (self.mc.batch_size,))
        x = self.x[idx].float().mul(1 / 255).unsqueeze(1)
        if self.augment:
            x = torch_augment(torch, x, self.mc.augment)
        loss = torch.nn.functional.cross_entropy(
            self.model(x), self.y[idx], label_smoothing=self.mc.label_smoothing
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_total += loss.detach()

    def sync(self) -> None:
        float(self.loss_total)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        with self.torch.no_grad():
            self.model.eval()
            logits = self.model(self.torch.from_numpy(x.copy()).float().mul(1 / 255).unsqueeze(1))
            self.model.train()
        return float((logits[:, :10].argmax(1).numpy() == y).mean())


class TinyTrainer:
    """The real trainer, driven the way the train stage drives it."""

    def __init__(self, mc, train_x: np.ndarray, train_y: np.ndarray, im2col: bool = True, outputs: int = 10):
        from tinygrad import Tensor

        from mnist_webgpu.train import trainer as train

        x, y = Tensor(np.ascontiguousarray(train_x)).realize(), Tensor(train_y.astype(np.int32)).realize()
        self.t = train.Trainer(mc, x, y, len(train_x), im2col=im2col, outputs=outputs)

    def step(self, lr: float) -> None:
        self.t.step()  # the same schedule as learning_rates(), kept on the device

    def sync(self) -> None:
        self.t.loss_total.item()

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.t.predictions(x) == y).mean())


SGEMM_SIDE = 2048


def sgemm_gflops() -> float:
    """GFLOP/s of numpy's sgemm on 2048x2048 float32 (the best of 5): the machine's practical
    ceiling. The environment may pin OpenBLAS's core type or cache size for other work, so the
    child runs without those settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    code = f"""
import time, numpy as np
a = np.random.default_rng(0).random(({SGEMM_SIDE}, {SGEMM_SIDE}), dtype=np.float32)
b = a.copy()
a @ b
times = []
for _ in range(5):
    start = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - start)
print(2 * {SGEMM_SIDE} ** 3 / min(times) / 1e9)
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout)


def step_gflop(trainer) -> float:
    """tinygrad's own count of the floating-point operations in one training step."""
    from tinygrad.helpers import GlobalCounters

    trainer.sync()
    GlobalCounters.reset()
    trainer.step(0.0)
    trainer.sync()
    return GlobalCounters.global_ops / 1e9


def timed_block(trainer, lrs: list[float]) -> float:
    """Milliseconds per step over one block, synchronised at both ends."""
    trainer.sync()
    start = time.perf_counter()
    for lr in lrs:
        trainer.step(lr)
    trainer.sync()
    return (time.perf_counter() - start) * 1000 / len(lrs)


def time_to_accuracy(trainer, mc, target: float, val, budget_s: float) -> float | None:
    """Training seconds (evaluation excluded) to validation accuracy >= target, config's schedule."""
    from mnist_webgpu.train.trainer import learning_rates

    rates = learning_rates(mc)
    spent, every = 0.0, max(1, min(mc.eval_every, 250))
    for step in range(mc.steps):
        start = time.perf_counter()
        trainer.step(rates[step])
        if (step + 1) % every == 0 or step + 1 == mc.steps:
            trainer.sync()
            spent += time.perf_counter() - start
            if trainer.accuracy(*val) >= target:
                return spent
            if spent > budget_s:
                return None
        else:
            spent += time.perf_counter() - start
    return None


def bench_model(torch, cfg, name: str, mnist, args, log) -> dict:
    mc = cfg.model(name)
    sizes = mnist_split(cfg.train)
    train_x, train_y = mnist.train_x[: sizes.n_train], mnist.train_y[: sizes.n_train]
    val = (mnist.train_x[sizes.val], mnist.train_y[sizes.val])

    def make_tiny(*a):
        return TinyTrainer(*a, im2col=cfg.train.im2col, outputs=cfg.train.outputs)

    start = time.perf_counter()
    tiny = make_tiny(mc, train_x, train_y)
    for _ in range(3):  # TinyJit captures on the second call: the third runs the graph
        tiny.step(mc.lr)
    tiny.sync()
    tiny_warmup = time.perf_counter() - start
    start = time.perf_counter()
    ref = TorchTrainer(torch, mc, train_x, train_y, cfg.train.outputs)
    for _ in range(3):
        ref.step(mc.lr)
    ref.sync()
    torch_warmup = time.perf_counter() - start

    guess = timed_block(tiny, [mc.lr] * 3)
    n = block_steps(guess, args.quick)
    rounds = args.rounds or (3 if args.quick else 6)
    # PyTorch at one thread and at all cores: on a busy shared machine its multi-threaded
    # kernels can collapse (threads wait on each other), so its faster setting is the reference
    cores = machine.cpu_cores()
    threads = sorted({1, cores})
    times: dict[str, list[float]] = {"tinygrad": [], **{f"torch_{t}t": [] for t in threads}}
    for r in range(rounds):
        times["tinygrad"].append(timed_block(tiny, [mc.lr] * n))
        for t in threads:
            torch.set_num_threads(t)
            times[f"torch_{t}t"].append(timed_block(ref, [mc.lr] * n))
        log(f"{name}: round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in times.items()))
    medians = {k: statistics.median(v) for k, v in times.items()}
    gflop, ceiling = step_gflop(tiny), sgemm_gflops()  # the ceiling measured right after the rounds
    torch_key = min((k for k in medians if k.startswith("torch")), key=medians.get)
    torch.set_num_threads(int(torch_key[6:-1]))
    tiny_ms, torch_ms = medians["tinygrad"], medians[torch_key]
    result = {
        "tinygrad_ms": round(tiny_ms, 2),
        "torch_ms": round(torch_ms, 2),
        "ratio": round(tiny_ms / torch_ms, 2),
        "tinygrad_warmup_s": round(tiny_warmup, 1),
        "step_gflop": round(gflop, 3),
        "tinygrad_gflops": round(gflop / tiny_ms * 1e3, 1),
        "sgemm_gflops": round(ceiling, 1),
        "torch_warmup_s": round(torch_warmup, 2),
        "torch_threads": int(torch_key[6:-1]),
        **{f"{k}_ms": round(v, 2) for k, v in medians.items() if k != "tinygrad"},
        "steps_per_block": n,
        "rounds": rounds,
        "batch_size": mc.batch_size,
    }
    if not args.quick or args.accuracy:
        target = TARGETS.get(mc.arch, 0.98)
        budget = 900.0

        def make_torch(*a):
            return TorchTrainer(torch, *a, cfg.train.outputs)

        for label, make in (("tinygrad", make_tiny), ("torch", make_torch)):
            seconds = time_to_accuracy(make(mc, train_x, train_y), mc, target, val, budget)
            result[f"{label}_s_to_val_{target:.0%}"] = None if seconds is None else round(seconds, 1)
            log(f"{name}: {label} reached val {target:.0%} after {seconds} s of training")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config.load()
    patches.apply_tinygrad_env(cfg)  # exactly what the train stage sets before importing tinygrad
    try:
        import torch
    except ImportError:
        print("error: PyTorch is not installed; run `pip install -e '.[torch-bench]'`", file=sys.stderr)
        return 1
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    mnist = data.load(cfg.cache_dir())
    measured_on = {"processor": machine.processor(), "trainer": trainer_path()}
    log(
        f"machine: {measured_on['processor']}, {machine.cpu_cores()} cores; trainer: {measured_on['trainer']}"
    )
    results = {}
    for name in args.models or cfg.model_names:
        results[name] = bench_model(torch, cfg, name, mnist, args, log)
    if args.json:
        print(json.dumps({**measured_on, "models": results}))
        return 0
    header = f"{'model':<6} {'tinygrad ms':>12} {'torch ms':>9} {'ratio':>6} {'tiny warm-up s':>15}"
    print(f"\n{header} {'GFLOP/s (of sgemm)':>19}")
    for name, r in results.items():
        tiny, ref, warm = r["tinygrad_ms"], r["torch_ms"], r["tinygrad_warmup_s"]
        rate = f"{r['tinygrad_gflops']:.0f} ({r['tinygrad_gflops'] / r['sgemm_gflops']:.0%})"
        print(f"{name:<6} {tiny:>12.1f} {ref:>9.1f} {r['ratio']:>6.2f} {warm:>15.1f} {rate:>19}")
        extra = {k: v for k, v in r.items() if "_s_to_val_" in k}
        if extra:
            print("       " + ", ".join(f"{k}: {v}" for k, v in extra.items()))
    ceilings = ", ".join(f"{r['sgemm_gflops']:.0f}" for r in results.values())
    side = f"{SGEMM_SIDE}x{SGEMM_SIDE}"
    print(f"numpy sgemm {side} in the same run: {ceilings} GFLOP/s (after each model's rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
