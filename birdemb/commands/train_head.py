"""birdemb train-head: a small head on stored embeddings, labels from a surrogate model."""
from __future__ import annotations

from birdemb.commands.data_options import add_data_arguments, data_options, label_options
from birdemb.errors import UsageError
from birdemb.training.config import INITS, FitOptions, TrainConfig


def register(subparsers) -> None:
    p = subparsers.add_parser("train-head", help="train a head on stored embeddings with surrogate labels")
    add_data_arguments(p)
    p.add_argument("--loss", required=True, choices=["bce", "asl", "sigmoidf1"])
    p.add_argument("--hidden", type=int, default=0, help="0: linear head; N: one hidden layer of N (e.g. 256)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-find", action="store_true", help="pick the learning rate with Lightning's finder")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs (0: none)")
    p.add_argument("--init", choices=list(INITS), default="scratch",
                   help="surrogate: start the linear head from the surrogate's own classifier rows")
    p.add_argument("--weights", help="the surrogate's weights for --init surrogate (default: the model's own)")
    p.add_argument("--gamma-pos", type=float, default=1.0, help="ASL gamma for positives (1)")
    p.add_argument("--gamma-neg", type=float, default=4.0, help="ASL gamma for negatives (4)")
    p.add_argument("--clip", type=float, default=0.05, help="ASL probability clip (0.05)")
    p.add_argument("--S", dest="sigmoid_s", type=float, default=-1.0, help="sigmoidF1 slope S (-1)")
    p.add_argument("--E", dest="sigmoid_e", type=float, default=0.0, help="sigmoidF1 offset E (0)")
    p.set_defaults(func=run)


def fit_options(args) -> FitOptions:
    if args.hidden < 0:
        raise UsageError("--hidden must be 0 (linear) or a positive width")
    return FitOptions(
        loss=args.loss, hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_find=args.lr_find, init=args.init, weights=args.weights, patience=args.patience,
        gamma_pos=args.gamma_pos, gamma_neg=args.gamma_neg, clip=args.clip, sigmoid_s=args.sigmoid_s,
        sigmoid_e=args.sigmoid_e,
    )


def config_from_args(args) -> TrainConfig:
    return TrainConfig(data_options(args), label_options(args), fit_options(args), args.out)


def run(args) -> int:
    from birdemb.training.fit import train_head

    result = train_head(config_from_args(args))
    m = result.metrics
    print(f"species mapping ({args.surrogate}): {m['mapping']['report']}")
    print(f"{m['counts']['train_windows']} training windows ({m['counts']['train_files']} files), "
          f"{m['counts']['val_windows']} validation windows ({m['counts']['val_files']} held-out files); "
          f"{m['epochs_run']} epochs, best epoch {m['best_epoch']}")
    print(result.line())
    print(f"run directory: {result.run_dir}")
    return 0
