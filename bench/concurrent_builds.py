"""Two `doit build`s at once: one waits for the other (or refuses), and dist/ is never partial.

    python bench/concurrent_builds.py [--rounds 100] [--keep DIR]

In a throwaway copy of the project with one small MLP (projectkit.MLP_ONLY), built once so
that each round is the site, verify and the swap into dist/, every round changes the site
title in config.toml and starts two `doit build`s together. It records each exit status
and whether a build said "another build is running (pid N)" (src/mnist_webgpu/pipeline/lock.py),
and after both have exited checks dist/: verify passes on it, every file its own index
names is there (sw.js's precache list, each model manifest's weight files, index.html,
404.html, .nojekyll), it shows this round's title, and no staging directory is left beside
it. Meanwhile a reader polls dist/ for partial states: a dist/ that exists but lacks a file
its own index names. A reading torn by a swap (dist/ replaced while it was being read) is
counted apart, not as partial. Exit status 1 on any failed build, bad dist/ or partial reading.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package; the kits (tests/kits)

from kits.projectkit import FAST_CONFIG, MLP_ONLY, clean_env, copy_project  # noqa: E402

from mnist_webgpu.core import config  # noqa: E402
from mnist_webgpu.core.errors import PipelineError  # noqa: E402
from mnist_webgpu.core.layout import Layout, site_models  # noqa: E402
from mnist_webgpu.data import mnist as data  # noqa: E402
from mnist_webgpu.publish import verify  # noqa: E402

TITLE = 'title = "kill test"'
LOCK_LINE = re.compile(r"another build is running \(pid \d+\)[^\n]*")
PRECACHE = re.compile(r"const PRECACHE = (\[.*?\]);")


def files_under(root: Path) -> set[str]:
    """Every file below `root` (raises if a directory vanishes mid-walk: a swap, not a gap)."""
    found, stack = set(), [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    found.add(Path(entry.path).relative_to(root).as_posix())
    return found


def named_files(dist: Path) -> set[str]:
    """The files dist/ says it holds: its fixed pages, sw.js's precache list, each manifest's forms."""
    named = {"index.html", "404.html", ".nojekyll", "sw.js"}
    worker = (dist / "sw.js").read_text()
    match = PRECACHE.search(worker)
    if not match:
        raise ValueError("sw.js: no PRECACHE list")
    named |= {n for n in json.loads(match[1]) if n not in ("./", "")}
    for model in site_models(dist):
        named |= {model.file(f["file"]) for f in json.loads((dist / model.manifest).read_text())["forms"]}
    return named


def missing_files(dist: Path) -> list[str]:
    return sorted(named_files(dist) - files_under(dist))


class Reader:
    """Polls dist/ while builds run: absent, complete, partial, or torn by a swap mid-read."""

    def __init__(self, dist: Path):
        self.dist = dist
        self.counts: Counter[str] = Counter()
        self.partial: list[list[str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.is_set():
            try:
                before = os.stat(self.dist).st_ino
            except FileNotFoundError:
                self.counts["absent"] += 1
                time.sleep(0.002)
                continue
            try:
                missing = missing_files(self.dist)
                torn = os.stat(self.dist).st_ino != before
            except (OSError, ValueError):  # a file or folder went away under the read
                missing, torn = [], True
            if torn:
                self.counts["torn"] += 1
            elif missing:
                self.counts["partial"] += 1
                self.partial.append(missing)
            else:
                self.counts["complete"] += 1
            time.sleep(0.002)

    def __enter__(self) -> Reader:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def outcome(code: int, output: str) -> str:
    """How one build of a pair ended: ran alone, waited for the other, refused, or failed."""
    said = LOCK_LINE.search(output)
    if code == 0:
        return "waited" if said else "ok"
    if said and "Traceback" not in output:
        return "refused"
    return "failed"


def run(rounds: int, workdir: Path) -> int:
    cache = config.load(FAST_CONFIG).cache_dir()
    if not data.is_complete(cache):
        raise PipelineError(f"{cache}: MNIST is not cached; run `doit data` (or the test suite) first")
    root = copy_project(workdir / "project", MLP_ONLY)
    env = clean_env(cache)
    doit = [sys.executable, "-m", "doit", "build"]
    first = subprocess.run(doit, cwd=root, env=env, capture_output=True, text=True)
    if first.returncode:
        raise PipelineError(
            f"the first build failed in {root}:\n{first.stdout[-2000:]}{first.stderr[-2000:]}"
        )
    print(f"project copy {root}, built once", flush=True)
    dist, layout = root / "dist", Layout(root)
    outcomes: Counter[str] = Counter()
    pairs: Counter[str] = Counter()  # per round, how its two builds ended together
    lock_lines: Counter[str] = Counter()
    bad_rounds, title = [], TITLE
    with Reader(dist) as reader:
        for i in range(1, rounds + 1):
            new_title = f'title = "concurrent round {i}"'
            cfg_path = root / "config.toml"
            cfg_path.write_text(cfg_path.read_text().replace(title, new_title, 1))
            title = new_title
            pair = [
                subprocess.Popen(
                    doit, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                for _ in range(2)
            ]
            outputs = [p.communicate(timeout=900)[0] for p in pair]
            ends = [outcome(p.returncode, out) for p, out in zip(pair, outputs, strict=True)]
            outcomes.update(ends)
            pairs[", ".join(sorted(ends))] += 1
            for out in outputs:
                lock_lines.update(re.sub(r"pid \d+", "pid N", m) for m in LOCK_LINE.findall(out))
            problems = []
            for p, out, end in zip(pair, outputs, ends, strict=True):
                if end == "failed":
                    problems.append(f"build exited {p.returncode}: {out.strip().splitlines()[-3:]}")
            try:
                verify.verify(config.load(cfg_path), dist, layout)
            except PipelineError as exc:
                problems.append(f"verify on dist/: {exc}")
            try:
                if missing := missing_files(dist):
                    problems.append(f"dist/ lacks {len(missing)} files it names: {missing[:3]}")
                if f"concurrent round {i}" not in (dist / "index.html").read_text():
                    problems.append("dist/index.html does not show this round's title")
            except (OSError, ValueError) as exc:
                problems.append(f"dist/ unreadable: {exc}")
            if leftovers := [p.name for p in root.iterdir() if p.name.startswith(".dist.")]:
                problems.append(f"staging left beside dist/: {leftovers}")
            if problems:
                bad_rounds.append(i)
            print(
                f"round {i:3d}: exits {[p.returncode for p in pair]} ({', '.join(ends)})"
                + (": " + "; ".join(problems) if problems else ""),
                flush=True,
            )
    print()
    print(f"{rounds} rounds of two concurrent `doit build`s")
    print("builds: " + ", ".join(f"{outcomes[k]} {k}" for k in ("ok", "waited", "refused", "failed")))
    print("rounds: " + ", ".join(f"{n} ({ends})" for ends, n in pairs.most_common()))
    for line, n in lock_lines.most_common():
        print(f"  {n} x {line!r}")
    print(f"rounds whose dist/ failed a check after both builds: {len(bad_rounds)} {bad_rounds or ''}")
    c = reader.counts
    print(
        f"reader: {sum(c.values())} readings of dist/ during the builds: {c['complete']} complete, "
        f"{c['partial']} partial, {c['absent']} absent (between the swap's two renames), "
        f"{c['torn']} torn by a swap mid-read (discarded)"
    )
    for missing in reader.partial[:5]:
        print(f"  partial: lacked {missing[:5]}")
    return 1 if bad_rounds or c["partial"] or outcomes["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="rounds (default 100)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="concurrent-builds-"))
    try:
        return run(args.rounds, workdir)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
