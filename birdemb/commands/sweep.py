"""birdemb sweep: train a grid of heads and write a results table (Markdown and Parquet)."""
from __future__ import annotations

from birdemb.commands.data_options import add_data_arguments, data_options
from birdemb.training.config import FitOptions, TrainConfig


def _list(value: str, kind=str) -> list:
    return [kind(v) for v in value.split(",") if v]


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="grid of losses x labels x hidden x embeddings x init -> results table")
    add_data_arguments(p, labels=False)
    p.set_defaults(embeddings="birdnet")
    for action in p._actions:  # comma lists here, not single values
        if action.dest == "embeddings":
            action.required, action.help = False, "comma list of embedding models (birdnet)"
    p.add_argument("--out", required=True, help="folder for runs/, results.md and results.parquet")
    p.add_argument("--labels", default="species,pseudo", help="comma list of label schemes (species,pseudo)")
    p.add_argument("--losses", default="bce,asl,sigmoidf1",
                   help="comma list: bce, asl, sigmoidf1, or the paper's asl_gp1_gn4, sigmoidf1_S-15_E0, ...")
    p.add_argument("--hidden", default="0,256", help="comma list of hidden sizes (0,256)")
    p.add_argument("--init", default="auto,scratch,surrogate", help="comma list (auto,scratch,surrogate)")
    p.add_argument("--steps", type=int, help="optimiser steps per run (default: the solver's budget)")
    p.add_argument("--epochs", type=int, help="or passes over the training windows")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float)
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.training.sweep import Grid, run_sweep

    embeddings = _list(args.embeddings)
    base = TrainConfig(data_options(args, embeddings=embeddings[0]),
                       fit=FitOptions(steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr), out=args.out)
    grid = Grid(losses=_list(args.losses), labels=_list(args.labels), hidden=_list(args.hidden, int),
                embeddings=embeddings, inits=_list(args.init))
    table = run_sweep(base, grid)
    print(f"{table.height} runs -> {args.out}/results.md, {args.out}/results.parquet")
    print((open(f"{args.out}/results.md").read()))
    return 0
