"""birdemb sweep: train a grid of heads and write a results table (Markdown and Parquet)."""
from __future__ import annotations

from birdemb.commands.train_head import split_datasets


def _list(value: str, kind=str) -> list:
    return [kind(v) for v in value.split(",") if v]


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="grid of losses x labels x hidden x embeddings x init -> results table")
    p.add_argument("--store", required=True)
    p.add_argument("--surrogate", required=True)
    p.add_argument("--out", required=True, help="folder for runs/, results.md and results.parquet")
    p.add_argument("--embeddings", default="birdnet", help="comma list of embedding models (birdnet)")
    p.add_argument("--labels", default="species,pseudo", help="comma list of label schemes (species,pseudo)")
    p.add_argument("--losses", default="bce,asl,sigmoidf1",
                   help="comma list: bce, asl, sigmoidf1, or the paper's asl_gp1_gn4, sigmoidf1_S-15_E0, ...")
    p.add_argument("--hidden", default="0,256", help="comma list of hidden sizes (0,256)")
    p.add_argument("--init", default="scratch,surrogate", help="comma list (scratch,surrogate)")
    p.add_argument("--dataset", action="append", dest="datasets")
    p.add_argument("--metadata")
    p.add_argument("--taxonomy")
    p.add_argument("--species-list")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.sweep import Grid, run_sweep
    from birdemb.train import TrainConfig

    base = TrainConfig(
        store=args.store, embeddings=_list(args.embeddings)[0], surrogate=args.surrogate, out=args.out,
        datasets=split_datasets(args.datasets), metadata=args.metadata, taxonomy=args.taxonomy,
        species_list=args.species_list, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        val_fraction=args.val_fraction, seed=args.seed,
    )
    grid = Grid(losses=_list(args.losses), labels=_list(args.labels), hidden=_list(args.hidden, int),
                embeddings=_list(args.embeddings), inits=_list(args.init))
    table = run_sweep(base, grid)
    print(f"{table.height} runs -> {args.out}/results.md, {args.out}/results.parquet")
    print((open(f"{args.out}/results.md").read()))
    return 0
