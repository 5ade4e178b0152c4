"""Wall time of the real `doit build` in a temporary copy of the project, data already cached.

    python bench/build_times.py [--config config.toml] [--runs 3] [--model NAME]

Four figures, each the median of `--runs` runs, each with the tasks doit actually ran:
a cold build (no build/, dist/ or doit database; the MNIST cache is reused), a no-op
rebuild (after one settling build, see run()), a template-only rebuild (templates/base.html
edited), and a rebuild after one model's learning rate changed. A cold build includes
training: on the full config that is tens of minutes per run on a CPU;
`--config tests/kits/fast.toml` times the pipeline itself.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package; the kits (tests/kits)

from kits.projectkit import clean_env, copy_project, tasks_ran  # noqa: E402

from mnist_webgpu.core import config  # noqa: E402
from mnist_webgpu.core.errors import PipelineError  # noqa: E402


class Copy:
    def __init__(self, root: Path, cfg: config.Config):
        self.root = copy_project(root, cfg.path.read_text())
        self.env = clean_env(cfg.cache_dir())
        # the site stamps the source commit: give the copy one, as a checkout would have
        for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "bench"]):
            subprocess.run(["git", *args], cwd=root, env=self.env, capture_output=True, check=False)

    def build(self) -> tuple[float, list[str]]:
        """Seconds of one `doit build`, and the tasks it ran (not those it found up to date)."""
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "doit", "build"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise PipelineError(f"bench: doit build failed in the project copy: {last}")
        return elapsed, tasks_ran(result.stdout)

    def wipe(self) -> None:
        for name in ("build", "dist"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        for db in self.root.glob(".doit.db*"):
            db.unlink()

    def edit_template(self, i: int) -> None:
        path = self.root / "templates" / "base.html"
        text = path.read_text()
        if "</body>" not in text:
            raise PipelineError(f"{path}: no </body> to edit")
        path.write_text(text.replace("</body>", f"<!-- bench edit {i} -->\n</body>", 1))

    def edit_lr(self, model: str, i: int) -> None:
        """Scale one model's lr by a different factor each time, so every run is a real change."""
        path = self.root / "config.toml"
        text = path.read_text()
        section = re.search(rf"^\[models\.{re.escape(model)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        lr = section and re.search(r"^lr\s*=\s*([0-9.eE+-]+)", section.group(1), re.M)
        if not lr:
            raise PipelineError(f"{path}: no lr = ... line in [models.{model}] to change")
        start = section.start(1) + lr.start(1)
        new = f"{float(lr.group(1)) * (1 + 0.01 * (i + 1)):.6g}"
        path.write_text(text[:start] + new + text[section.start(1) + lr.end(1) :])


def figure(runs: list[tuple[float, list[str]]]) -> dict:
    return {
        "median_s": statistics.median(s for s, _ in runs),
        "runs_s": [s for s, _ in runs],
        "tasks_run": sorted(set().union(*(set(t) for _, t in runs))),
    }


def run(cfg: config.Config, runs: int, model: str | None = None, log=print) -> dict:
    model = cfg.model(model or cfg.model_names[0]).name
    with tempfile.TemporaryDirectory(prefix="mnist-bench-build-") as tmp:
        copy = Copy(Path(tmp), cfg)
        out = {"config": str(cfg.path), "runs": runs, "changed_model": model}
        steps = [
            ("cold_build", lambda i: copy.wipe()),
            ("noop_rebuild", lambda i: None),
            ("template_only_rebuild", copy.edit_template),
            ("hyperparameter_rebuild", lambda i: copy.edit_lr(model, i)),
        ]
        for key, prepare in steps:
            if key == "noop_rebuild":
                # the first build after a cold one re-renders the site: dodo planned the site's
                # file_dep before the compile stage wrote the weight files it lists. Not a no-op,
                # so it is run untimed and its tasks recorded.
                out["first_rebuild_tasks_run"] = copy.build()[1]
                log(f"bench: first rebuild after the cold build ran {out['first_rebuild_tasks_run']}")
            timed = []
            for i in range(runs):
                prepare(i)
                timed.append(copy.build())
                log(f"bench: {key} {timed[-1][0]:.2f} s ({', '.join(timed[-1][1]) or 'nothing ran'})")
            out[key] = figure(timed)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=config.config_path())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default=None, help="the model whose lr changes (default: the first)")
    args = parser.parse_args(argv)
    try:
        result = run(config.load(args.config), args.runs, args.model)
    except (PipelineError, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key in ("cold_build", "noop_rebuild", "template_only_rebuild", "hyperparameter_rebuild"):
        print(f"{key:24} {result[key]['median_s']:8.2f} s  ({', '.join(result[key]['tasks_run'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
