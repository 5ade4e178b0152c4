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


def _site(cfg: config.Config, args: argparse.Namespace) -> None:
    from . import site

    out = site.render(cfg, site.staging_dir(cfg))
    print(f"site: rendered {out}")


STAGES = {
    "data": (_data, "download and verify the four MNIST files into the cache"),
    "site": (_site, "render the web app and model pages into build/site/"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnist_webgpu")
    sub = parser.add_subparsers(dest="stage", required=True)
    for name, (_, help_text) in STAGES.items():
        sub.add_parser(name, help=help_text)
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
