"""birdemb plot pacmap: 2-D PaCMAP projections of stored embeddings and logits."""
from __future__ import annotations

import time


def register(subparsers) -> None:
    p = subparsers.add_parser("plot", help="figures of a feature store")
    kinds = p.add_subparsers(dest="plot", required=True, metavar="PLOT")
    q = kinds.add_parser("pacmap", help="PaCMAP of per-window embeddings (top-N species) or per-file vectors")
    q.add_argument("--store", required=True, help="feature store folder")
    q.add_argument("--model", required=True, help="model whose embeddings (and logits) to project")
    q.add_argument("--dataset", required=True, help="dataset in the store, e.g. train")
    q.add_argument("--out", required=True, help="PNG file to write")
    q.add_argument("--top-n", type=int, default=10, help="species to colour (default 10)")
    q.add_argument("--per-file", action="store_true",
                   help="one point per file: mean embedding and max logits, side by side")
    q.add_argument("--max-points", type=int, default=20_000, help="sample at most this many points (default 20000)")
    q.add_argument("--seed", type=int, default=0, help="seed of the sample and of PaCMAP (default 0)")
    q.add_argument("--threshold", type=float, default=0.5,
                   help="soundscapes are coloured by the top species with sigmoid(logit) > this (default 0.5)")
    q.add_argument("--taxonomy", help="eBird_Taxonomy_v2021.csv: BirdNET species by eBird code in soundscape legends")
    q.set_defaults(func=run)


def run(args) -> int:
    from birdemb.errors import UsageError
    from birdemb.explore.figures import projection_figure
    from birdemb.explore.projection import ProjectionError, file_projections, window_projection
    from birdemb.labels.species import read_taxonomy

    taxonomy = read_taxonomy(args.taxonomy) if args.taxonomy else None
    started = time.perf_counter()
    common = dict(top_n=args.top_n, max_points=args.max_points, seed=args.seed, taxonomy=taxonomy,
                  threshold=args.threshold)
    try:
        if args.per_file:
            projections = file_projections(args.store, args.model, args.dataset, **common)
            title = f"PaCMAP of per-file vectors, {args.model} / {args.dataset}"
        else:
            projections = [window_projection(args.store, args.model, args.dataset, **common)]
            title = ""
    except ProjectionError as error:
        raise UsageError(str(error)) from None
    path = projection_figure([(p.points, p.labels, p.title) for p in projections], args.out, title)
    points = sum(len(p.points) for p in projections)
    print(f"{points} points projected in {time.perf_counter() - started:.1f} s -> {path}")
    return 0
