"""birdemb train-head: a small head on stored embeddings, labels from a surrogate model."""
from __future__ import annotations

from birdemb.errors import UsageError


def add_data_arguments(p, required: bool = True) -> None:
    """Options that pick the windows, species and labels (shared with evaluate and labels)."""
    p.add_argument("--store", required=required, help="feature store folder")
    p.add_argument("--embeddings", required=required, help="model whose embeddings feed the head, e.g. birdnet")
    p.add_argument("--surrogate", required=required, help="model whose logits make the labels, e.g. birdnet")
    p.add_argument("--labels", required=required, choices=["species", "pseudo", "folder"],
                   help="species: pseudo OR folder species on windows with a call; pseudo: sigmoid(logit) > "
                        "threshold; folder: the folder species on every window")
    p.add_argument("--dataset", action="append", dest="datasets",
                   help="dataset(s) of the store to use (repeat or comma list; default: all)")
    p.add_argument("--metadata", help="train_metadata.csv: the species list from its primary labels")
    p.add_argument("--taxonomy", help="eBird_Taxonomy_v2021.csv (BirdNET labels -> eBird codes; "
                                      "default: beside --metadata)")
    p.add_argument("--species-list", help="species list file (text, JSON, or sample_submission.csv)")
    p.add_argument("--threshold", type=float, default=0.5, help="pseudo-label probability threshold (0.5)")
    p.add_argument("--secondary", action="store_true", help="also label the metadata's secondary species")
    p.add_argument("--val-fraction", type=float, default=0.2, help="files held out for validation (0.2)")
    p.add_argument("--folds", type=int, default=0, help="k-fold by file instead of one split")
    p.add_argument("--seed", type=int, default=0)


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
    p.add_argument("--init", choices=["scratch", "surrogate"], default="scratch",
                   help="surrogate: start the linear head from the surrogate's own classifier rows")
    p.add_argument("--weights", help="the surrogate's model file for --init surrogate (default: packaged)")
    p.add_argument("--gamma-pos", type=float, default=1.0, help="ASL gamma for positives (1)")
    p.add_argument("--gamma-neg", type=float, default=4.0, help="ASL gamma for negatives (4)")
    p.add_argument("--clip", type=float, default=0.05, help="ASL probability clip (0.05)")
    p.add_argument("--S", dest="sigmoid_s", type=float, default=-1.0, help="sigmoidF1 slope S (-1)")
    p.add_argument("--E", dest="sigmoid_e", type=float, default=0.0, help="sigmoidF1 offset E (0)")
    p.set_defaults(func=run)


def split_datasets(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]


def config_from_args(args):
    from birdemb.train import TrainConfig

    if args.hidden < 0:
        raise UsageError("--hidden must be 0 (linear) or a positive width")
    return TrainConfig(
        store=args.store, embeddings=args.embeddings, surrogate=args.surrogate, labels=args.labels,
        loss=args.loss, hidden=args.hidden, out=args.out, datasets=split_datasets(args.datasets),
        metadata=args.metadata, taxonomy=args.taxonomy, species_list=args.species_list,
        threshold=args.threshold, secondary=args.secondary, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, lr_find=args.lr_find, val_fraction=args.val_fraction, folds=args.folds, seed=args.seed,
        init=args.init, weights=args.weights, patience=args.patience, gamma_pos=args.gamma_pos,
        gamma_neg=args.gamma_neg, clip=args.clip, sigmoid_s=args.sigmoid_s, sigmoid_e=args.sigmoid_e,
    )


def run(args) -> int:
    from birdemb.train import train_head

    result = train_head(config_from_args(args))
    m = result.metrics
    print(f"species mapping ({args.surrogate}): {m['mapping']['report']}")
    print(f"{m['counts']['train_windows']} training windows ({m['counts']['train_files']} files), "
          f"{m['counts']['val_windows']} validation windows ({m['counts']['val_files']} held-out files); "
          f"{m['epochs_run']} epochs, best epoch {m['best_epoch']}")
    print(result.line())
    print(f"run directory: {result.run_dir}")
    return 0
