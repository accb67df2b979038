"""birdemb index: build (or extend) the search-by-example index of one model's stored windows."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("index", help="build or extend the nearest-neighbour index of a model's stored windows")
    p.add_argument("--store", required=True, help="feature store folder")
    p.add_argument("--model", required=True, help="the model partition to index (e.g. birdnet)")
    p.add_argument("--dtype", default="f16", choices=("f16", "f32", "i8"), help="how the index keeps vectors")
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.explore.index import build_index

    print(build_index(args.store, args.model, dtype=args.dtype, progress=True).line())
    return 0
