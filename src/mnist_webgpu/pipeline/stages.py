"""The pipeline's stages: one definition of each stage's name, description, flags and work.

`python -m mnist_webgpu <stage> ...` parses its command line from this list, and
pipeline/tasks.py takes each doit task's `doc` and `params` from it, so the two never
drift. Each stage runs in its own process so tinygrad's environment (device, renderer) is
set before it is imported, and so a failure is one line on stderr and a non-zero exit.
A stage's work imports its package inside the function: planning imports none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_webgpu.core import config, faults, interrupts
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.pipeline import lock


@dataclass(frozen=True)
class Flag:
    """One command-line option, as both argparse and doit's `params` take it."""

    name: str  # --name on the command line; doit's param is the same with '_'
    type: type
    default: Any
    help: str
    short: str = ""

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")

    def argv(self, value: Any) -> list[str]:
        """The command-line words that pass `value` on; none for the default."""
        if value == self.default or value is None:
            return []
        return [f"--{self.name}"] if self.type is bool else [f"--{self.name}", str(value)]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        names = [f"-{self.short}"] * bool(self.short) + [f"--{self.name}"]
        if self.type is bool:
            parser.add_argument(*names, dest=self.key, action="store_true", help=self.help)
        else:
            parser.add_argument(*names, dest=self.key, type=self.type, default=self.default, help=self.help)

    def doit_param(self, default: Any = None) -> dict[str, Any]:
        param = {"name": self.key, "long": self.name, "type": self.type, "help": self.help}
        param["default"] = self.default if default is None else default
        return param | ({"short": self.short} if self.short else {})


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str  # one line: the CLI's help and doit's task description
    run: Callable[[config.Config, argparse.Namespace], None]
    flags: tuple[Flag, ...] = ()
    models: bool = False  # takes model names (default: every model in config)

    def argv(self, values: dict[str, Any]) -> list[str]:
        return [word for flag in self.flags for word in flag.argv(values.get(flag.key))]


def _data(cfg: config.Config, args: argparse.Namespace) -> None:
    from mnist_webgpu.data import mnist as data

    data.fetch(cfg)


def _drawings(cfg: config.Config, args: argparse.Namespace) -> None:
    from mnist_webgpu.data import mnist as data
    from mnist_webgpu.drawings import pad as drawings

    drawings.ensure(cfg, data.load(cfg.cache_dir()))


def _compile(cfg: config.Config, args: argparse.Namespace) -> None:
    import os

    # tinygrad reads its device list at import: NULL with the WGSL renderer traces kernels without a GPU
    os.environ["DEV"] = "CPU;NULL:WGSL"
    os.environ["MAX_KERNEL_BUFFERS"] = str(cfg.export.max_storage_buffers)
    from mnist_webgpu.export import webgpu as export

    for name in args.models or cfg.model_names:
        cfg.model(name)
    for name in args.models or cfg.model_names:
        export.run(cfg, name)


def _train(cfg: config.Config, args: argparse.Namespace) -> None:
    names = args.models or list(cfg.model_names)
    for name in names:
        cfg.model(name)  # an unknown name stops here, before tinygrad loads
    from mnist_webgpu.core import patching

    patching.apply_tinygrad_env(cfg)  # device, BEAM, kernel cache: tinygrad reads them at import
    from mnist_webgpu.models import zoo
    from mnist_webgpu.train import stage as train

    zoo.check(cfg)
    for name in names:
        train.run(cfg, name, log=lambda line: print(line, file=sys.stderr, flush=True))


def _sweep(cfg: config.Config, args: argparse.Namespace) -> None:
    from mnist_webgpu.sweep import study

    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else []
    if args.workers < 0:
        raise PipelineError(f"--workers: expected a number of worker processes >= 0, got {args.workers}")
    study.sweep_stage(
        cfg, args.storage, args.workers, devices, log=lambda *a, **k: print(*a, **k, flush=True)
    )


def _sweep_worker(cfg: config.Config, args: argparse.Namespace) -> None:
    import os

    from mnist_webgpu.core import patching

    patching.apply_tinygrad_env(cfg)  # before tinygrad is imported
    from mnist_webgpu.sweep import plan, study

    if args.device:
        os.environ.update(study.device_env(args.device))  # this worker's device wins over [train] device

    url, where = study.storage_url(cfg, args.storage)
    storage = study.open_storage(url, where, plan.of(cfg).heartbeat_seconds)
    name = args.name or f"{os.uname().nodename}-{os.getpid()}"
    n = study.work(cfg, storage, name, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{name}: done, {n} trial(s) run here", file=sys.stderr, flush=True)


def _site(cfg: config.Config, args: argparse.Namespace) -> None:
    from mnist_webgpu.core.layout import PROJECT
    from mnist_webgpu.site import render as site

    with lock.exclusive(PROJECT.build, wait=True, what="site"):
        out = site.render(cfg, PROJECT.site_staging)
    print(f"site: rendered {out}")


def _verify(cfg: config.Config, args: argparse.Namespace) -> None:
    from mnist_webgpu.core.layout import PROJECT
    from mnist_webgpu.publish import verify

    with lock.exclusive(PROJECT.build, wait=True, what="verify"):
        verify.verify(cfg, PROJECT.site_staging, PROJECT)
        faults.pause("verify")  # tests interrupt here: verified, dist/ not yet replaced
        verify.publish_to_dist(PROJECT.site_staging, PROJECT.dist)
    print(f"verified {PROJECT.site_staging} and published it to {PROJECT.dist}")


def _deploy(cfg: config.Config, args: argparse.Namespace) -> None:
    from mnist_webgpu.core.layout import PROJECT
    from mnist_webgpu.publish import deploy, verify

    with lock.exclusive(PROJECT.build, wait=False, what="deploy"):
        verify.verify(cfg, PROJECT.dist, PROJECT)
        published = deploy.publish(
            Path.cwd(), PROJECT.dist, cfg.deploy, dry_run=args.dry_run, allow_dirty=args.allow_dirty
        )
    where = f"{cfg.deploy.remote} {cfg.deploy.branch}"
    if published.unchanged:
        print(
            f"already published: {where} holds these {len(published.files)} files ({published.commit[:12]})"
        )
    elif published.pushed:
        commit = published.commit[:12]
        print(f"published {len(published.files)} files to {where} as {commit}: {published.message}")
    else:
        print(f"dry run: would publish {len(published.files)} files to {where}: {published.message}")
        for name in published.files:
            print(f"  {name}")


def _serve(cfg: config.Config, args: argparse.Namespace) -> None:
    from mnist_webgpu.core.layout import PROJECT
    from mnist_webgpu.publish import serve

    port = cfg.serve.port if args.port is None else args.port
    if not 0 <= port <= 65535:  # socket.bind would raise OverflowError, a traceback
        raise PipelineError(
            f"serve: --port {port}: expected a TCP port between 1 and 65535, or 0 for any free one"
        )
    serve.serve(PROJECT.dist, port)


STAGES = {
    s.name: s
    for s in (
        Stage("data", "download and verify the four MNIST files into the cache", _data),
        Stage(
            "drawings",
            "draw digits and non-digits as the page sees them into build/data/drawings.npz",
            _drawings,
        ),
        Stage(
            "train",
            "train models into build/models/<name>/ (weights, metrics, test mistakes)",
            _train,
            models=True,
        ),
        Stage(
            "compile",
            "compile trained models to WGSL and WebAssembly kernels and weight files in build/webgpu/<name>/",
            _compile,
            models=True,
        ),
        Stage(
            "sweep",
            "run the [sweep] Optuna studies (validation split only); export sweeps/, HYPERPARAMETERS.md",
            _sweep,
            (
                Flag(
                    "storage",
                    str,
                    "",
                    "Optuna storage URL (default: [sweep] storage, else SQLite in build/sweep/)",
                ),
                Flag("workers", int, 1, "worker processes on this machine (0: only export the record)"),
                Flag("devices", str, "", "one worker per tinygrad device, e.g. CUDA:0,CUDA:1"),
            ),
        ),
        Stage(
            "sweep-worker",
            "join a sweep's storage (here or on another machine) and run trials until its studies are done",
            _sweep_worker,
            (
                Flag("storage", str, "", "the sweep's Optuna storage URL"),
                Flag("device", str, "", "tinygrad device for this worker, e.g. CUDA:1"),
                Flag("name", str, "", "how this worker names itself in the study"),
            ),
        ),
        Stage("site", "render the web app and model pages into build/site/", _site),
        Stage(
            "verify",
            "check the staged site (links, weights, accuracy gates), then swap it into dist/",
            _verify,
        ),
        Stage(
            "deploy",
            "verify dist/, then publish it to the configured branch ([deploy] remote and branch)",
            _deploy,
            (
                Flag("dry-run", bool, False, "show what would be published, push nothing"),
                Flag("allow-dirty", bool, False, "publish even when the source tree has uncommitted changes"),
            ),
        ),
        Stage(
            "serve",
            "serve dist/ on 127.0.0.1 for a local preview",
            _serve,
            (
                Flag(
                    "port",
                    int,
                    None,
                    "TCP port on 127.0.0.1, 0 for any free one (default: [serve] port)",
                    "p",
                ),
            ),
        ),
    )
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mnist_webgpu")
    sub = parser.add_subparsers(dest="stage", required=True)
    for stage in STAGES.values():
        stage_parser = sub.add_parser(stage.name, help=stage.doc)
        if stage.models:
            stage_parser.add_argument(
                "models", nargs="*", metavar="MODEL", help="model names from [models] (default: all)"
            )
        for flag in stage.flags:
            flag.add_to(stage_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = config.load()
        STAGES[args.stage].run(cfg, args)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return interrupts.report()
    except OSError as exc:
        # what the machine refused (read-only or full disk, a file where a directory belongs):
        # the path and the reason are the whole story, a traceback adds nothing
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"error: {args.stage}: out of memory", file=sys.stderr)
        return 1
    return 0
