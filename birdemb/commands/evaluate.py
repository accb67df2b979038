"""birdemb evaluate: a run's head and the surrogate's own predictions ("passthrough") against
ground truth (folder labels of held-out files, or annotations), on the same windows."""
from __future__ import annotations

from birdemb.commands.data_options import add_data_arguments, data_options, label_options, warnings_as_lines
from birdemb.errors import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score a run's head and passthrough against ground truth")
    p.add_argument("--run", help="run directory from train-head: reuse its data, labels and split")
    add_data_arguments(p, required=False)
    p.add_argument("--eval-threshold", type=float, default=0.5, help="probability threshold of F1 (0.5)")
    p.add_argument("--all-files", action="store_true",
                   help="passthrough alone on every file with ground truth, not only the held-out ones")
    p.add_argument("--out", help="folder for evaluation.md, evaluation.json and roc_pr.png")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.training.evaluate import config_from_run, evaluate, report_markdown
    from birdemb.training.rundir import json_text

    if args.run:
        config = config_from_run(args.run, store=args.store, annotations=args.annotations,
                                 bad_windows=args.bad_windows)
        data, labels = config.data, config.labels
    else:
        missing = [name for name in ("store", "embeddings", "surrogate", "labels") if not getattr(args, name)]
        if missing:
            raise UsageError(f"give --run RUN_DIR, or --{' --'.join(m.replace('_', '-') for m in missing)}")
        data, labels = data_options(args), label_options(args)
    with warnings_as_lines():
        result = evaluate(data, labels, args.run, args.eval_threshold, args.all_files, args.out)
    if args.json:
        print(json_text(result))
        return 0
    print(report_markdown(result))
    if args.out:
        print(f"report -> {args.out}/evaluation.md")
    return 0
