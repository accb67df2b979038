"""birdemb train-head: a small head on stored embeddings, labels from a surrogate model."""
from __future__ import annotations

from birdemb.commands.data_options import add_data_arguments, data_options, label_options, warnings_as_lines
from birdemb.errors import UsageError
from birdemb.training.config import (
    DEFAULT_STEPS,
    DEVICES,
    INITS,
    LBFGS_ITERATIONS,
    PENALTY_PER_DIM,
    SOLVERS,
    FitOptions,
    TrainConfig,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("train-head", help="train a head on stored embeddings with surrogate labels")
    add_data_arguments(p)
    p.add_argument("--loss", choices=["bce", "asl", "sigmoidf1"], default="bce", help="training loss (bce)")
    p.add_argument("--hidden", type=int, default=0, help="0: linear head; N: one hidden layer of N (e.g. 256)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--init", choices=list(INITS), default="auto",
                   help="auto (default): when the embeddings are the surrogate's own, species it knows add its "
                        "logit and the head learns a correction (it starts as the surrogate); the rest are "
                        "learned from scratch. scratch: every species from scratch. surrogate: as auto, and the "
                        "species it lacks start near 0")
    p.add_argument("--solver", choices=list(SOLVERS), default="auto",
                   help="auto: full-batch L-BFGS for a linear head, Adam for a hidden layer")
    p.add_argument("--steps", type=int,
                   help=f"optimiser steps (default: {DEFAULT_STEPS['lbfgs']} L-BFGS steps of "
                        f"{LBFGS_ITERATIONS} iterations, or {DEFAULT_STEPS['adam']} Adam steps)")
    p.add_argument("--epochs", type=int, help="or passes over the training windows, instead of --steps")
    p.add_argument("--batch-size", type=int, default=256, help="Adam's batch, never above the training windows (256)")
    p.add_argument("--lr", type=float, help="learning rate (default: 1 for L-BFGS, 0.001 for Adam)")
    p.add_argument("--lr-find", action="store_true", help="pick Adam's learning rate with Lightning's finder")
    p.add_argument("--patience", type=int, default=10,
                   help="validation checks without progress before stopping (10; 0: never stop early)")
    p.add_argument("--penalty", type=float,
                   help=f"L2 penalty on the last layer's rows (default {PENALTY_PER_DIM:g} x embedding dim / "
                        "training windows)")
    p.add_argument("--no-pos-weight", dest="pos_weight", action="store_false",
                   help="do not weight positives by sqrt(negatives / positives)")
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="train on the raw embeddings")
    p.add_argument("--device", choices=list(DEVICES), default="auto", help="auto: CUDA when torch sees one")
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
        loss=args.loss, hidden=args.hidden, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, lr_find=args.lr_find, solver=args.solver, init=args.init,
        patience=args.patience, penalty=args.penalty, pos_weight=args.pos_weight, standardize=args.standardize,
        device=args.device,
        gamma_pos=args.gamma_pos, gamma_neg=args.gamma_neg, clip=args.clip, sigmoid_s=args.sigmoid_s,
        sigmoid_e=args.sigmoid_e,
    )


def config_from_args(args) -> TrainConfig:
    return TrainConfig(data_options(args), label_options(args), fit_options(args), args.out)


def run(args) -> int:
    from birdemb.training.fit import train_head

    with warnings_as_lines():
        result = train_head(config_from_args(args))
    m = result.metrics
    print(f"species mapping ({args.surrogate}): {m['mapping']['report']}")
    print(f"{m['counts']['train_windows']} training windows ({m['counts']['train_files']} files), "
          f"{m['counts']['val_windows']} validation windows ({m['counts']['val_files']} held-out files); "
          f"{m['fit']['steps']} {m['fit']['solver']} steps on {m['fit']['device']}, best at step {m['best_step']} "
          f"(selected on {m['fit']['selection']})")
    if m["counts"].get("bad_windows"):
        print(f"{m['counts']['bad_windows']} stored windows left out: their embedding or logits hold NaN or inf")
    print(result.line())
    print(f"run directory: {result.run_dir}")
    return 0
