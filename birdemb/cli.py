"""The command line: parse, call one core function, print. Each command lives in its own
module under birdemb/commands/ with `register(subparsers)`; list it in COMMANDS."""
from __future__ import annotations

import argparse
import importlib
import re
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
    "check",
    "species-list",
    "detect",
    "export-classifier",
    "index",
    "search",
    "app",
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


OPTION = re.compile(r"`([a-z_]+)(?:=([^`]*))?`")  # `name` or `name=value` in a core message


def word_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """A core message in the command line's words: the core names options by their Python
    names in backquotes (`val_fraction`, `init=surrogate`); here they become the command's
    flags (--val-fraction, --init surrogate). Names the command has no flag for stay as they are."""
    flags = {action.dest: action.option_strings[-1] for action in parser._actions if action.option_strings}

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        word = flags.get(name, name)
        return word if value is None else f"{word} {value}" if word.startswith("-") else f"{word}={value}"

    return OPTION.sub(flag, message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (BirdembError, FileNotFoundError) as error:
        command_parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        print(f"birdemb {args.command}: error: {word_flags(str(error), command_parser[args.command])}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"birdemb {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `birdemb species-list ... | head`: the reader has all it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
