"""birdemb submit: score soundscapes with one or more runs or bundles into submission.csv."""
from __future__ import annotations

import sys

from birdemb.commands.location_options import add_location_arguments
from birdemb.deploy.submit import run_from_args
from birdemb.errors import UsageError
from birdemb.runtime.lifecycle import interruptible, interruption
from birdemb.runtime.submission import add_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("submit", help="write submission.csv for a folder of soundscapes")
    p.add_argument("--run", action="append", default=[], help="run directory (repeat for an ensemble)")
    p.add_argument("--bundle", action="append", default=[], help="bundle folder (repeat for an ensemble)")
    add_arguments(p)
    add_location_arguments(p, "location filter (default off): species not expected at a file's place get 0", -1)
    p.add_argument("--taxonomy", metavar="CSV",
                   help="eBird_Taxonomy_v2021.csv: names the species of eBird codes (e.g. the competition's)")
    p.set_defaults(func=run)


def run(args) -> int:
    sources = [*args.run, *args.bundle]
    if not sources:
        raise UsageError("give at least one --run or --bundle")
    try:
        with interruptible():
            return run_from_args(sources, args)
    except KeyboardInterrupt as interrupt:  # exit status 130 for Ctrl-C, 143 for SIGTERM
        reason, status = interruption(interrupt)
        print(f"birdemb submit: interrupted by {reason}: {args.out} not written, rerun the same command",
              file=sys.stderr)
        return status
