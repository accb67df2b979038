"""The command line: parse, call one core function, print. Each command lives in its own
module under birdemb/commands/ with `register(subparsers)`; list it in COMMANDS."""
from __future__ import annotations

import argparse
import importlib
import sys

from birdemb import __version__
from birdemb.errors import BirdembError

COMMANDS = [
    "extract",
    "info",
    "labels",
    "train-head",
    "evaluate",
    "sweep",
    "bundle",
    "submit",
    "eda",
    "plot",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="birdemb", description="Bird-call embeddings, pseudo multi-labels, small heads and CPU submissions."
    )
    parser.add_argument("--version", action="version", version=f"birdemb {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"birdemb.commands.{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (BirdembError, FileNotFoundError) as error:
        print(f"birdemb {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"birdemb {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
