"""`python -m mnist_webgpu <stage> ...`: the entry point every doit task runs.

Each stage runs in its own process so tinygrad's environment (device, renderer) is set
before it is imported, and so a failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys

from . import config
from .errors import PipelineError


def _data(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import data

    data.fetch(cfg)


def _compile(cfg: config.Config, args: argparse.Namespace) -> None:
    import os

    # tinygrad reads its device list at import: NULL with the WGSL renderer traces kernels without a GPU
    os.environ["DEV"] = "CPU;NULL:WGSL"
    os.environ["MAX_KERNEL_BUFFERS"] = str(cfg.export.max_storage_buffers)
    from . import export

    for name in args.models or cfg.model_names:
        export.run(cfg, name)


def _compile_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models", nargs="*", metavar="MODEL", help="models to compile (default: all in config)"
    )


STAGES = {
    "data": (_data, "download and verify the four MNIST files into the cache"),
    "compile": (_compile, "compile trained models to WGSL kernels and weight files in build/webgpu/<name>/"),
}
# stages that take arguments of their own
STAGE_ARGS = {"compile": _compile_args}


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
