"""`python -m mnist_webgpu <stage> ...`: the entry point every doit task runs.

Each stage runs in its own process so tinygrad's environment (device, renderer) is set
before it is imported, and so a failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import config, faults, interrupts, lock
from .errors import PipelineError


def _data(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import data

    data.fetch(cfg)


def _drawings(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import data, drawings

    drawings.ensure(cfg, data.load(cfg.cache_dir()))


def _compile(cfg: config.Config, args: argparse.Namespace) -> None:
    import os

    # tinygrad reads its device list at import: NULL with the WGSL renderer traces kernels without a GPU
    os.environ["DEV"] = "CPU;NULL:WGSL"
    os.environ["MAX_KERNEL_BUFFERS"] = str(cfg.export.max_storage_buffers)
    from . import export

    for name in args.models or cfg.model_names:
        cfg.model(name)
    for name in args.models or cfg.model_names:
        export.run(cfg, name)


def _compile_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models", nargs="*", metavar="MODEL", help="models to compile (default: all in config)"
    )


def _train(cfg: config.Config, args: argparse.Namespace) -> None:
    names = args.models or list(cfg.model_names)
    for name in names:
        cfg.model(name)  # an unknown name stops here, before tinygrad loads
    from . import patches

    patches.apply_tinygrad_env(cfg)  # device, BEAM, kernel cache: tinygrad reads them at import
    from . import train

    for name in names:
        train.run(cfg, name, log=lambda line: print(line, file=sys.stderr, flush=True))


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="model names from [models] (default: all)")


def _sweep(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import study

    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else []
    if args.workers < 0:
        raise PipelineError(f"--workers: expected a number of worker processes >= 0, got {args.workers}")
    study.sweep_stage(
        cfg, args.storage, args.workers, devices, log=lambda *a, **k: print(*a, **k, flush=True)
    )


def _sweep_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage", default="", help="Optuna storage URL (default: [sweep] storage or SQLite)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes here (0: export the record only)"
    )
    parser.add_argument("--devices", default="", help="one worker per tinygrad device, e.g. CUDA:0,CUDA:1")


def _sweep_worker(cfg: config.Config, args: argparse.Namespace) -> None:
    import os

    from . import patches

    patches.apply_tinygrad_env(cfg)  # before tinygrad is imported
    from . import study

    if args.device:
        os.environ.update(study.device_env(args.device))  # this worker's device wins over [train] device

    url, where = study.storage_url(cfg, args.storage)
    storage = study.open_storage(url, where, cfg.sweep.heartbeat_seconds if cfg.sweep else 10)
    name = args.name or f"{os.uname().nodename}-{os.getpid()}"
    n = study.work(cfg, storage, name, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{name}: done, {n} trial(s) run here", file=sys.stderr, flush=True)


def _sweep_worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default="", help="the sweep's Optuna storage URL")
    parser.add_argument("--device", default="", help="tinygrad device for this worker, e.g. CUDA:1")
    parser.add_argument("--name", default="", help="how this worker names itself in the study")


def _site(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import site
    from .layout import PROJECT

    with lock.exclusive(PROJECT.build, wait=True, what="site"):
        out = site.render(cfg, PROJECT.site_staging)
    print(f"site: rendered {out}")


def _verify(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import verify
    from .layout import PROJECT

    with lock.exclusive(PROJECT.build, wait=True, what="verify"):
        verify.verify(cfg, PROJECT.site_staging, PROJECT)
        faults.pause("verify")  # tests interrupt here: verified, dist/ not yet replaced
        verify.publish_to_dist(PROJECT.site_staging, PROJECT.dist)
    print(f"verified {PROJECT.site_staging} and published it to {PROJECT.dist}")


def _deploy(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import deploy, verify
    from .layout import PROJECT

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
    from . import serve
    from .layout import PROJECT

    port = cfg.serve.port if args.port is None else args.port
    if not 0 <= port <= 65535:  # socket.bind would raise OverflowError, a traceback
        raise PipelineError(
            f"serve: --port {port}: expected a TCP port between 1 and 65535, or 0 for any free one"
        )
    serve.serve(PROJECT.dist, port)


def _deploy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="show what would be published, push nothing")
    parser.add_argument("--allow-dirty", action="store_true", help="publish even with uncommitted changes")


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="TCP port, 0 for any free one (default: [serve] port)")


STAGES = {
    "data": (_data, "download and verify the four MNIST files into the cache", None),
    "drawings": (
        _drawings,
        "draw digits and non-digits as on the page into build/data/drawings.npz (training, decline rule)",
        None,
    ),
    "train": (
        _train,
        "train models into build/models/<name>/ (weights, metrics, test mistakes)",
        _train_args,
    ),
    "compile": (
        _compile,
        "compile trained models to WGSL kernels and weight files in build/webgpu/<name>/",
        _compile_args,
    ),
    "sweep": (
        _sweep,
        "run the [sweep] Optuna studies here, export sweeps/results.json and HYPERPARAMETERS.md",
        _sweep_args,
    ),
    "sweep-worker": (
        _sweep_worker,
        "join a sweep's storage (here or on another machine) and run trials until its studies are done",
        _sweep_worker_args,
    ),
    "site": (_site, "render the web app and model pages into build/site/", None),
    "verify": (_verify, "check the staged site, then swap it into dist/", None),
    "deploy": (_deploy, "publish dist/ to the configured gh-pages branch", _deploy_args),
    "serve": (_serve, "serve dist/ on 127.0.0.1 for a local preview", _serve_args),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnist_webgpu")
    sub = parser.add_subparsers(dest="stage", required=True)
    for name, (_, help_text, add_arguments) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text)
        if add_arguments:
            add_arguments(stage_parser)
    args = parser.parse_args(argv)
    try:
        cfg = config.load()
        STAGES[args.stage][0](cfg, args)
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


if __name__ == "__main__":
    sys.exit(main())
