"""Where one training step's time goes, kernel by kernel, for each model of the config.

    python bench/step_profile.py [--top 12] [MODEL ...]

Builds the real trainer (the train stage's tinygrad settings, im2col, the CPU patches) on a
pool of random digits (kernel times do not depend on the pixels), warms the jitted step up,
then runs one more step with tinygrad's DEBUG=2, which times every kernel as it runs, and
reads those lines back. Prints per model the step's wall time, the time inside kernels, and
the slowest kernels with their share and GFLOP/s. Names: r_ = a kernel with a reduction
(matrix products, sums), E_ = elementwise; the numbers are the kernel's loop sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mnist_webgpu.core import config, machine, patching  # noqa: E402

# "*** CPU  699 r_1568_2_16_8_72  arg 4 mem 0.05 GB tm 8973.65us/ 17.17ms ( 6 GFLOPS ..."
KERNEL_LINE = re.compile(r"\*\*\*\s+\S+\s+\d+\s+(\S+).*?tm\s+([\d.]+)(us|ms|s)/.*?\(\s*([\d.]+) GFLOPS")
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def profile(cfg, name: str, top: int) -> None:
    from tinygrad import Context, Tensor

    from mnist_webgpu.train import trainer as train

    mc = cfg.model(name)
    rng = np.random.default_rng(0)
    pool = 6000
    x = Tensor(rng.integers(0, 256, (pool, 28, 28), dtype=np.uint8)).realize()
    y = Tensor(rng.integers(0, cfg.train.outputs, pool).astype(np.int32)).realize()
    trainer = train.Trainer(mc, x, y, pool, im2col=cfg.train.im2col, outputs=cfg.train.outputs)
    for _ in range(4):
        trainer.step()
    trainer.loss_total.item()
    start = time.perf_counter()
    for _ in range(10):
        trainer.step()
    trainer.loss_total.item()
    wall = (time.perf_counter() - start) / 10 * 1e3
    log = io.StringIO()
    with contextlib.redirect_stdout(log), Context(DEBUG=2):
        trainer.step()
        trainer.loss_total.item()
    per_kernel: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # ms, GFLOP/s, count
    for m in KERNEL_LINE.finditer(re.sub(r"\x1b\[[0-9;]*m", "", log.getvalue())):
        entry = per_kernel[m[1]]
        entry[0] += float(m[2]) * UNIT[m[3]]
        entry[1] = max(entry[1], float(m[4]))
        entry[2] += 1
    inside = sum(e[0] for e in per_kernel.values())
    print(f"\n{name} ({mc.arch} {list(mc.widths)}, batch {mc.batch_size}): step {wall:.1f} ms untraced,")
    print(f"  {inside:.1f} ms inside {sum(e[2] for e in per_kernel.values())} kernel runs when each is timed")
    print(f"  {'kernel':40} {'ms':>7} {'share':>6} {'GFLOP/s':>8} {'runs':>5}")
    for kernel, (ms, gflops, runs) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {kernel:40} {ms:7.2f} {ms / inside:6.1%} {gflops:8.0f} {runs:5d}")
    by_kind = defaultdict(float)
    for kernel, (ms, _, _) in per_kernel.items():
        by_kind[kernel.split("_")[0]] += ms
    print("  by kind: " + ", ".join(f"{k} {v:.1f} ms ({v / inside:.0%})" for k, v in sorted(by_kind.items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    cfg = config.load()
    patching.apply_tinygrad_env(cfg)  # what the train stage sets before tinygrad loads
    for name in args.models or cfg.model_names:
        cfg.model(name)
    fenced = "on" if patching.enabled() else "off"
    print(f"machine: {machine.processor()}, {machine.cpu_cores()} cores; tinygrad patches {fenced}")
    for name in args.models or cfg.model_names:
        profile(cfg, name, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
