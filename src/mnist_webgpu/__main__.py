"""`python -m mnist_webgpu <stage> ...`: the entry point every doit task runs.

Each stage runs in its own process so tinygrad's environment (device, renderer) is set
before it is imported, and so a failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import sys

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
    if cfg.train.device:
        # tinygrad reads its device once, at import; Device.DEFAULT cannot be set later
        os.environ["DEV"] = cfg.train.device
    from . import train

    for name in names:
        train.run(cfg, name, log=lambda line: print(line, file=sys.stderr, flush=True))


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", help="model names from [models] (default: all)")


STAGES = {
    "data": (_data, "download and verify the four MNIST files into the cache"),
    "train": (_train, "train models and write build/models/<name>/{weights.safetensors,metrics.json,...}"),
}
# stages that take arguments after their name
STAGE_ARGS = {"train": _train_args}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnist_webgpu")
    sub = parser.add_subparsers(dest="stage", required=True)
    for name, (_, help_text) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text)
        if name in STAGE_ARGS:
            STAGE_ARGS[name](stage_parser)
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
