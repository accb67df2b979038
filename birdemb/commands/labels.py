"""birdemb labels: label statistics for a scheme (windows with a call, positives per species)."""
from __future__ import annotations

from birdemb.commands.data_options import add_data_arguments, data_options, label_options, warnings_as_lines


def register(subparsers) -> None:
    p = subparsers.add_parser("labels", help="label statistics: windows with a call, positives per species")
    add_data_arguments(p, split=False)  # statistics of every window: no split
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.labels.schemes import label_stats
    from birdemb.training.prepare import prepare
    from birdemb.training.rundir import json_text

    with warnings_as_lines():
        prepared = prepare(data_options(args), label_options(args))
    stats = label_stats(prepared.labels, prepared.species, prepared.call)
    if args.json:
        print(json_text({**stats.as_dict(), "mapping": prepared.mapping.as_dict(),
                         "bad_windows": prepared.bad_windows}))
        return 0
    print(f"species mapping ({args.surrogate}): {prepared.mapping.report}")
    print(f"labels: {args.labels} (threshold {args.threshold}{', with secondary labels' if args.secondary else ''})")
    print(stats.table())
    return 0
