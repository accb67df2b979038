"""birdemb evaluate: the surrogate's own predictions ("passthrough") versus a trained head,
on the same held-out windows."""
from __future__ import annotations

import json

from birdemb.commands.data_options import add_data_arguments, data_options, label_options
from birdemb.errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score passthrough (and a run's head) on the validation windows")
    p.add_argument("--run", help="run directory from train-head: reuse its data, labels and split")
    add_data_arguments(p, required=False)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.training.evaluate import comparison_table, config_from_run, evaluate

    if args.run:
        config = config_from_run(args.run, store=args.store)
        data, labels = config.data, config.labels
    else:
        missing = [name for name in ("store", "embeddings", "surrogate", "labels") if not getattr(args, name)]
        if missing:
            raise UsageError(f"give --run RUN_DIR, or --{' --'.join(missing)}")
        data, labels = data_options(args), label_options(args)
    result = evaluate(data, labels, args.run)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"species mapping: {result['mapping']['report']}")
    print(f"labels: {result['label_scheme']}; {result['val_windows']} validation windows from "
          f"{result['val_files']} held-out files")
    print(comparison_table(result))
    return 0
