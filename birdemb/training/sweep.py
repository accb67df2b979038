"""A grid of head-training runs (losses x label schemes x hidden sizes x embedding models x
init) and one results table, shaped like the paper's Tables 3-5: one row per run with the
head's and the passthrough's validation scores on the same held-out files."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from birdemb.training.config import TrainConfig
from birdemb.training.fit import prepare_run, train_head

# the paper's loss settings; name -> TrainConfig overrides
LOSS_SETTINGS = {
    "bce": {"loss": "bce"},
    "asl": {"loss": "asl", "gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05},
    "sigmoidf1": {"loss": "sigmoidf1", "sigmoid_s": -1.0, "sigmoid_e": 0.0},
}
PAPER_LOSSES = {
    **{f"asl_gp{gp}_gn{gn}": {"loss": "asl", "gamma_pos": gp, "gamma_neg": gn, "clip": 0.05}
       for gp in (0, 1) for gn in (0, 2, 4)},
    **{f"sigmoidf1_S{s}_E{e}": {"loss": "sigmoidf1", "sigmoid_s": s, "sigmoid_e": e}
       for s in (-1, -15, -30) for e in (0, 1)},
    "bce": {"loss": "bce"},
}


@dataclass
class Grid:
    losses: list[str] = field(default_factory=lambda: ["bce", "asl", "sigmoidf1"])
    labels: list[str] = field(default_factory=lambda: ["species", "pseudo"])
    hidden: list[int] = field(default_factory=lambda: [0, 256])
    embeddings: list[str] = field(default_factory=lambda: ["birdnet"])
    inits: list[str] = field(default_factory=lambda: ["auto", "scratch", "surrogate"])


def loss_overrides(name: str) -> dict:
    settings = {**LOSS_SETTINGS, **PAPER_LOSSES}
    if name not in settings:
        raise ValueError(f"unknown loss setting {name!r}; choose from {', '.join(settings)}")
    return settings[name]


def runs(base: TrainConfig, grid: Grid):
    """(name, config) for every valid combination; `init=surrogate` only on its own embeddings."""
    for embeddings, labels, loss, hidden, init in itertools.product(
        grid.embeddings, grid.labels, grid.losses, grid.hidden, grid.inits
    ):
        if init == "surrogate" and embeddings != base.data.surrogate:
            continue  # adding the surrogate's logits needs its own embeddings
        name = f"{embeddings}-{labels}-{loss}-h{hidden}-{init}"
        out = None if base.out is None else str(Path(base.out) / "runs" / name)
        yield name, loss, base.with_values(**loss_overrides(loss), embeddings=embeddings, labels=labels,
                                           hidden=hidden, init=init, out=out)


def run_sweep(base: TrainConfig, grid: Grid, progress=print):
    """Train every run of the grid; returns the results as a polars DataFrame and writes
    results.parquet and results.md into base.out (when set)."""
    import polars as pl

    rows = []
    prepared_cache: dict[tuple, object] = {}  # labels and embeddings are loaded once per pair
    for name, loss_name, config in runs(base, grid):
        key = (config.data.embeddings, config.labels.scheme, config.fit.init == "surrogate")
        if key not in prepared_cache:
            prepared_cache[key] = prepare_run(config)
        result = train_head(config, prepared_cache[key])
        m = result.metrics
        passthrough = m["passthrough"] or {}
        rows.append({
            "embeddings": config.data.embeddings, "surrogate": config.data.surrogate,
            "labels": config.labels.scheme, "loss": loss_name, "hidden": config.fit.hidden, "init": config.fit.init,
            "val_macro_auroc": m["val_macro_auroc"], "val_macro_f1": m["val_macro_f1"],
            "passthrough_macro_auroc": passthrough.get("macro_auroc"),
            "passthrough_macro_f1": passthrough.get("macro_f1"),
            "best_step": m["best_step"], "truth": m["truth"], "val_windows": m["counts"]["val_windows"],
            "val_files": m["counts"]["val_files"], "seconds": round(m["seconds"], 1), "run": name,
        })
        progress(f"{name}: {result.line()}")
    table = pl.DataFrame(rows).with_columns(
        (pl.col("val_macro_auroc") - pl.col("passthrough_macro_auroc")).alias("auroc_vs_passthrough")
    )
    if base.out:
        out = Path(base.out)
        out.mkdir(parents=True, exist_ok=True)
        table.write_parquet(out / "results.parquet")
        (out / "results.md").write_text(markdown_table(table))
    return table


def markdown_table(table) -> str:
    """Grouped like the paper: one block per (embeddings, labels); rows are loss x head x init."""
    columns = ["loss", "hidden", "init", "val_macro_auroc", "val_macro_f1", "passthrough_macro_auroc",
               "auroc_vs_passthrough", "best_step"]
    lines = []
    for (embeddings, labels), block in table.group_by(["embeddings", "labels"], maintain_order=True):
        surrogate = block["surrogate"][0]
        lines += [f"### {embeddings} embeddings, {labels} labels from {surrogate}", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in block.sort("val_macro_auroc", descending=True, nulls_last=True).iter_rows(named=True):
            lines.append("| " + " | ".join(_cell(row[c], signed=c == "auroc_vs_passthrough") for c in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return str(value)
