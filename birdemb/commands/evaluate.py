"""birdemb evaluate: the surrogate's own predictions ("passthrough") versus a trained head,
on the same held-out windows."""
from __future__ import annotations

import json

from birdemb.commands.train_head import add_data_arguments, split_datasets
from birdemb.errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score passthrough (and a run's head) on the validation windows")
    p.add_argument("--run", help="run directory from train-head: reuse its data, labels and split")
    add_data_arguments(p, required=False)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.evaluate import comparison_table, config_from_run, evaluate
    from birdemb.train import TrainConfig

    if args.run:
        config = config_from_run(args.run, store=args.store)
    else:
        missing = [name for name in ("store", "embeddings", "surrogate", "labels") if not getattr(args, name)]
        if missing:
            raise UsageError(f"give --run RUN_DIR, or --{' --'.join(missing)}")
        config = TrainConfig(
            store=args.store, embeddings=args.embeddings, surrogate=args.surrogate, labels=args.labels,
            datasets=split_datasets(args.datasets), metadata=args.metadata, taxonomy=args.taxonomy,
            species_list=args.species_list, threshold=args.threshold, secondary=args.secondary,
            val_fraction=args.val_fraction, folds=args.folds, seed=args.seed,
        )
    result = evaluate(config, args.run)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"species mapping: {result['mapping']['report']}")
    print(f"labels: {result['label_scheme']}; {result['val_windows']} validation windows from "
          f"{result['val_files']} held-out files")
    print(comparison_table(result))
    return 0
