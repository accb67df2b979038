"""birdemb info: what a feature store holds."""
from __future__ import annotations

from birdemb import store


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="summarise a feature store")
    p.add_argument("store", help="feature store folder")
    p.set_defaults(func=run)


def run(args) -> int:
    rows = store.info(args.store)
    if not rows:
        print(f"{args.store}: empty store")
        return 0
    print(format_table(rows))
    return 0


COLUMNS = ["model", "dataset", "files", "windows", "audio_h", "species", "failures",
           "embedding_dim", "n_labels", "window_s", "sample_rate", "weights_sha256"]


def format_table(rows: list[dict]) -> str:
    def cell(value):
        return f"{value:.2f}" if isinstance(value, float) else ("-" if value is None else str(value))

    cells = [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)
