"""`python -m mnist_webgpu <stage> ...`: the entry point every doit task runs.

Each stage runs in its own process so tinygrad's environment (device, renderer) is set
before it is imported, and so a failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import config
from .errors import PipelineError


def _data(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import data

    data.fetch(cfg)


def _train(cfg: config.Config, args: argparse.Namespace) -> None:
    names = args.models or list(cfg.model_names)
    unknown = [n for n in names if n not in cfg.model_names]
    if unknown:
        known = ", ".join(cfg.model_names)
        raise PipelineError(f"{cfg.path}: models.{unknown[0]}: no such model (known: {known})")
    from . import speed

    speed.apply_tinygrad_env(cfg)  # device, BEAM, kernel cache: tinygrad reads them at import
    from . import train

    for name in names:
        train.run(cfg, name, log=lambda line: print(line, file=sys.stderr, flush=True))


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="model names from [models] (default: all)")


def _site(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import site

    out = site.render(cfg, site.staging_dir(cfg))
    print(f"site: rendered {out}")


def _verify(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import paths, verify

    verify.verify(cfg, paths.SITE_STAGING, paths.MODELS)
    verify.publish_to_dist(paths.SITE_STAGING, paths.DIST)
    print(f"verified {paths.SITE_STAGING} and published it to {paths.DIST}")


def _deploy(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import deploy, paths, verify

    verify.verify(cfg, paths.DIST, paths.MODELS)
    published = deploy.publish(
        Path.cwd(), paths.DIST, cfg.deploy, dry_run=args.dry_run, allow_dirty=args.allow_dirty
    )
    where = f"{cfg.deploy.remote} {cfg.deploy.branch}"
    if published.pushed:
        commit = published.commit[:12]
        print(f"published {len(published.files)} files to {where} as {commit}: {published.message}")
    else:
        print(f"dry run: would publish {len(published.files)} files to {where}: {published.message}")
        for name in published.files:
            print(f"  {name}")


def _serve(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import paths, serve

    serve.serve(paths.DIST, args.port or cfg.serve.port)


def _deploy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="show what would be published, push nothing")
    parser.add_argument("--allow-dirty", action="store_true", help="publish even with uncommitted changes")


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: [serve] port)")


STAGES = {
    "data": (_data, "download and verify the four MNIST files into the cache", None),
    "train": (
        _train,
        "train models into build/models/<name>/ (weights, metrics, test mistakes)",
        _train_args,
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
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
