"""birdemb check: verify a feature store, and with --repair set aside what is broken."""
from __future__ import annotations

from birdemb.store.check import check_store
from birdemb.store.repair import repair_store


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="verify a feature store (parts, manifests, failure logs)")
    p.add_argument("store", help="feature store folder, or a URI such as s3://bucket/store")
    p.add_argument("--repair", action="store_true",
                   help="move damaged parts into the partition's _quarantine/ (the next extract redoes their "
                        "files), rebuild a lost manifest from the parts, drop half-written failure lines")
    p.set_defaults(func=run)


def run(args) -> int:
    report = check_store(args.store)
    for problem in report.problems:
        print(problem.line())
    if args.repair and any(p.repair for p in report.problems):
        for action in repair_store(args.store):
            print(f"repaired {action}")
        found = len(report.problems)
        report = check_store(args.store)
        for problem in report.problems:
            print(f"remains {problem.line()}")
        print(f"{report.summary()} (after repairing; {found} found before)")
    else:
        print(report.summary())
    return 0 if not report.problems else 1
