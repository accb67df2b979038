"""birdemb submit: score soundscapes with one or more runs or bundles into submission.csv."""
from __future__ import annotations

from birdemb.deploy.submit import run_from_args
from birdemb.errors import UsageError
from birdemb.runtime.submission import add_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("submit", help="write submission.csv for a folder of soundscapes")
    p.add_argument("--run", action="append", default=[], help="run directory (repeat for an ensemble)")
    p.add_argument("--bundle", action="append", default=[], help="bundle folder (repeat for an ensemble)")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    sources = [*args.run, *args.bundle]
    if not sources:
        raise UsageError("give at least one --run or --bundle")
    return run_from_args(sources, args)
