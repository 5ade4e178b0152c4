"""K7 and K8 at random moments: a killed `doit build` never lets a stale model ship.

    python bench/kills.py [--rounds 20] [--seed N] [--kinds k7,k8] [--keep DIR]

In a throwaway copy of the project with one small MLP (projectkit.MLP_ONLY: a build takes
seconds), each round sets the model's `lr` to another value, starts `doit build`, and kills
doit's whole process group at a random moment:

- K7: SIGKILL, uniform over the train and compile stages (from doit announcing
  train:mlp to it announcing site, as measured by one calibration build);
- K8: SIGINT (a terminal's Ctrl-C), uniform over the compile stage.

Then it puts `lr` back, runs `doit build` to completion and checks what dist/ ships:
metrics.json says the weights were trained with the config's settings (its settings hash and
its lr), the shipped manifest was compiled from those weights, every shipped weight file has
the digest the manifest records, and the shipped digests are the very ones a clean build of
the restored config produced (training is deterministic: the calibration checks it). verify
must also pass on dist/ itself. Each round prints its kill time and what had finished by
then; the totals come last. Exit status 1 when any round shipped a model that differs from
the config, failed verify or could not rebuild.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package; the kits (tests/kits)

from kits.projectkit import FAST_CONFIG, MLP_ONLY, clean_env, copy_project  # noqa: E402

from mnist_webgpu.core import (  # noqa: E402
    config,
    records,
)
from mnist_webgpu.core.errors import PipelineError  # noqa: E402
from mnist_webgpu.core.layout import Layout, SiteModel  # noqa: E402
from mnist_webgpu.data import mnist as data  # noqa: E402
from mnist_webgpu.publish import verify  # noqa: E402

MODEL = "mlp"
GOOD_LR, OTHER_LR = "lr = 0.003", "lr = 0.0005"
KINDS = {"k7": signal.SIGKILL, "k8": signal.SIGINT}


def doit_env(cache: Path) -> dict[str, str]:
    # unbuffered, so doit's ". task" lines arrive when the task starts, not when doit exits
    return {**clean_env(cache), "PYTHONUNBUFFERED": "1"}


class Build:
    """One `doit build` in its own process group, its stdout lines timestamped as they come."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "doit", "build"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # a shell without job control starts background jobs with SIGINT ignored, and
            # children inherit that: give doit the terminal's default, as under a Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def announced(self, task: str) -> float | None:
        """Seconds from the start to doit's ".  task" line, None if not (yet) printed."""
        return next((t for t, line in self.lines if line.split() == [".", task]), None)

    def wait_for(self, task: str, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while (at := self.announced(task)) is None:
            if self.proc.poll() is not None:
                self.reader.join()
                if (at := self.announced(task)) is not None:
                    return at
                raise PipelineError(f"doit build exited {self.proc.returncode} before starting {task}")
            if time.monotonic() > deadline:
                raise PipelineError(f"doit build did not start {task} within {timeout:.0f} s")
            time.sleep(0.01)
        return at

    def finish(self, timeout: float = 900) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join()
        return code

    def kill_group(self, sig: int) -> str:
        """Signal doit's whole group (as a terminal or `kill -9 -PGID` would), then wait until
        every process of it is gone; what is left after 60 s is killed and said so."""
        with contextlib.suppress(ProcessLookupError):  # the group may have ended on its own
            os.killpg(self.proc.pid, sig)
        note = ""
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is None:
                time.sleep(0.05)
            else:
                try:
                    os.killpg(self.proc.pid, 0)  # orphans of the group still running?
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                note = " (the group outlived the signal by 60 s: SIGKILLed)"
                deadline = time.monotonic() + 60
        self.reader.join()
        return note

    def tail(self) -> str:
        return "\n".join(line for _, line in self.lines[-15:])


@dataclass
class Round:
    kind: str
    index: int
    delay: float = 0.0
    killed_at: float = 0.0
    state: str = ""
    problems: list[str] = field(default_factory=list)
    verify_error: str = ""
    rebuilt: bool = True
    landed: str = ""  # the stage the kill landed in, or that doit had exited before it

    @property
    def differs(self) -> bool:
        return bool(self.problems)


class Bench:
    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.env = doit_env(cache)
        self.layout = Layout(root)
        self.config_path = root / "config.toml"
        self.good_digests: dict[str, str] = {}
        self.other_digests: dict[str, str] = {}

    def set_lr(self, old: str, new: str) -> None:
        text = self.config_path.read_text()
        if old not in text:
            raise PipelineError(f"{self.config_path}: {old!r} not found")
        self.config_path.write_text(text.replace(old, new, 1))

    def build(self) -> Build:
        build = Build(self.root, self.env)
        if build.finish() != 0:
            raise PipelineError(f"doit build failed in {self.root}:\n{build.tail()}")
        return build

    def shipped_digests(self) -> dict[str, str]:
        manifest = json.loads((self.layout.dist / SiteModel(MODEL).manifest).read_text())
        return {f["form"]: f["sha256"] for f in manifest["forms"]}

    @staticmethod
    def stage_times(build: Build) -> tuple[float, float]:
        """Seconds of train+compile and of compile alone in one build, from doit's task lines."""
        train, compile_, site = (build.announced(t) for t in (f"train:{MODEL}", f"compile:{MODEL}", "site"))
        if None in (train, compile_, site):
            raise PipelineError(f"calibration: doit did not run train, compile and site:\n{build.tail()}")
        return site - train, site - compile_

    def calibrate(self) -> tuple[float, float]:
        """Reference digests of both settings and the stage durations the kill times are drawn over:
        the shorter of two retraining builds, so that few kills are drawn past a build's end."""
        self.build()
        self.good_digests = self.shipped_digests()
        self.set_lr(GOOD_LR, OTHER_LR)
        first = self.stage_times(self.build())
        self.other_digests = self.shipped_digests()
        self.set_lr(OTHER_LR, GOOD_LR)
        second = self.stage_times(self.build())
        again = self.shipped_digests()
        if again != self.good_digests:
            raise PipelineError(
                "calibration: two builds of the same config shipped different weights (training is not "
                "reproducible here), so the reference comparison cannot run"
            )
        if self.good_digests == self.other_digests:
            raise PipelineError("calibration: the two learning rates trained identical weights")
        return min(first[0], second[0]), min(first[1], second[1])

    def state(self) -> str:
        """What the killed build had finished, read from the files it leaves (not doit's word)."""
        cfg = config.load(self.config_path)  # lr is still the other value here
        settings = config.training_settings(cfg.train, cfg.model(MODEL))
        parts = []
        try:
            trained = records.read(records.Metrics, self.layout.train_outputs(MODEL).metrics).trained_with(
                settings
            )
        except records.SchemaError:
            trained = False
        parts.append("train done" if trained else "train not done")
        manifest_path = self.layout.manifest(MODEL)
        try:
            manifest = records.read(records.Manifest, manifest_path)
            if trained and manifest.compiled_from(self.layout.train_outputs(MODEL).weights):
                parts.append("compile done")
            elif manifest.file_problems(manifest_path):
                parts.append("compile mixed (weight files replaced, manifest not)")
            else:
                parts.append("compile not done")
        except records.SchemaError:
            parts.append("compile manifest unreadable")
        if not (self.layout.dist / SiteModel(MODEL).folder).is_dir():
            parts.append("dist/ absent")
        else:
            shipped = self.shipped_digests()
            parts.append(
                "dist/ has the other lr's model"
                if shipped == self.other_digests
                else "dist/ has the restored lr's model"
                if shipped == self.good_digests
                else "dist/ has neither reference model"
            )
        return ", ".join(parts)

    def check(self, result: Round) -> None:
        """After the recovery build: does dist/ ship the model the config describes?"""
        cfg = config.load(self.config_path)
        model = cfg.model(MODEL)
        outputs = self.layout.train_outputs(MODEL)
        dist_manifest = self.layout.dist / SiteModel(MODEL).manifest
        problems = result.problems
        try:
            metrics = records.read(records.Metrics, outputs.metrics)
            manifest = records.read(records.Manifest, dist_manifest)
        except records.SchemaError as exc:
            problems.append(str(exc))
            return
        if not metrics.trained_with(config.training_settings(cfg.train, model)):
            problems.append("metrics.json: settings hash is not the config's")
        if metrics.config.get("lr") != model.lr:
            problems.append(f"metrics.json: lr {metrics.config.get('lr')} but the config says {model.lr}")
        if not manifest.compiled_from(outputs.weights):
            problems.append("dist manifest: compiled from other weights than build/models/mlp/")
        problems += manifest.file_problems(dist_manifest)
        shipped = self.shipped_digests()
        if shipped == self.other_digests:
            problems.append("dist/ ships the other lr's weights (stale)")
        elif shipped != self.good_digests:
            problems.append("dist/ ships weights no clean build of this config produced")
        try:
            verify.verify(cfg, self.root / "dist", self.layout)
        except PipelineError as exc:
            result.verify_error = str(exc)

    def round(self, kind: str, index: int, window: float, rng: random.Random) -> Round:
        result = Round(kind, index, delay=rng.uniform(0, window))
        anchor = f"train:{MODEL}" if kind == "k7" else f"compile:{MODEL}"
        self.set_lr(GOOD_LR, OTHER_LR)
        build = Build(self.root, self.env)
        try:
            start = build.wait_for(anchor)
            time.sleep(max(0.0, start + result.delay - (time.monotonic() - build.started)))
            result.killed_at = time.monotonic() - build.started
            finished_first = build.proc.poll() is not None
            note = build.kill_group(KINDS[kind])
        finally:
            if build.proc.poll() is None:
                build.kill_group(signal.SIGKILL)
        result.state = self.state() + (" (doit had already exited)" if finished_first else "") + note
        result.landed = (
            "after doit had exited"
            if finished_first
            else "during train"
            if "train not done" in result.state
            else "between weight files and manifest"
            if "compile mixed" in result.state
            else "during compile"
            if "compile not done" in result.state
            else "after compile"
        )
        self.set_lr(OTHER_LR, GOOD_LR)
        recovery = Build(self.root, self.env)
        if recovery.finish() != 0:
            result.rebuilt = False
            result.problems.append(f"recovery build failed: {recovery.tail().splitlines()[-1:]}")
            return result
        self.check(result)
        return result


def run(rounds: int, seed: int, kinds: list[str], workdir: Path) -> int:
    cache = config.load(FAST_CONFIG).cache_dir()
    if not data.is_complete(cache):
        raise PipelineError(f"{cache}: MNIST is not cached; run `doit data` (or the test suite) first")
    bench = Bench(copy_project(workdir / "project", MLP_ONLY), cache)
    print(f"seed {seed}; project copy {bench.root}", flush=True)
    k7_window, k8_window = bench.calibrate()
    windows = {"k7": k7_window, "k8": k8_window}
    print(
        f"calibration: train+compile {k7_window:.2f} s, compile {k8_window:.2f} s; "
        "both learning rates train reproducibly",
        flush=True,
    )
    rng = random.Random(seed)
    results: list[Round] = []
    for kind in kinds:
        for i in range(1, rounds + 1):
            r = bench.round(kind, i, windows[kind], rng)
            results.append(r)
            anchor = "train" if kind == "k7" else "compile"
            verdict = "DIFFERS: " + "; ".join(r.problems) if r.differs else "ships the config's model"
            if r.verify_error:
                verdict += f"; VERIFY FAILED: {r.verify_error}"
            print(
                f"{kind} {i:2d}: {KINDS[kind].name} at {r.delay:5.2f} s into {anchor} "
                f"({r.killed_at:5.2f} s into the build): {r.state} -> {verdict}",
                flush=True,
            )
    print()
    failed = 0
    for kind in kinds:
        mine = [r for r in results if r.kind == kind]
        differ = sum(r.differs for r in mine)
        verify_failed = sum(bool(r.verify_error) for r in mine)
        not_rebuilt = sum(not r.rebuilt for r in mine)
        failed += differ + verify_failed
        print(
            f"{kind} ({KINDS[kind].name}): {len(mine)} rounds, shipped model differs from the config in "
            f"{differ}, verify failed after the recovery build in {verify_failed}, "
            f"recovery build failed in {not_rebuilt}"
        )
        landed = Counter(r.landed for r in mine)
        print("  kills landed: " + ", ".join(f"{n} {where}" for where, n in landed.most_common()))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of each kind (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: drawn, then printed)")
    parser.add_argument("--kinds", default="k7,k8", help="which kills, comma-separated (default k7,k8)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if unknown := [k for k in kinds if k not in KINDS]:
        parser.error(f"--kinds: unknown {', '.join(unknown)} (known: {', '.join(KINDS)})")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="kills-"))
    try:
        return run(args.rounds, seed, kinds, workdir)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
