"""What the app shows, read from the store (never written): the windows table with scores,
the embeddings, the overview numbers and the eda figures beside the store."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from birdemb import store
from birdemb.labels.mapping import surrogate_species
from birdemb.labels.species import read_taxonomy
from birdemb.runtime.head import head_logits, load_head, sigmoid

SCORE_PREFIX = "score:"  # windows-table columns "score:<species>": the surrogate's (or the head's) probability


@dataclass
class AppConfig:
    """What `birdemb app` was started with; the Streamlit script reads it from the environment."""

    store: str
    run: str | None = None
    audio: list[str] = field(default_factory=list)  # extra audio folders (must also be recorded roots)
    workdir: str = "birdemb-app"  # annotations, decisions and new runs: never inside the store
    model: str | None = None
    taxonomy: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> AppConfig:
        return cls(**json.loads(text))

    @property
    def annotations(self) -> Path:
        return Path(self.workdir) / "annotations.csv"


def run_config(run: str | None) -> dict:
    if not run or not (Path(run) / "config.json").is_file():
        return {}
    return json.loads((Path(run) / "config.json").read_text())


def pick_model(store_dir: str, wanted: str | None = None, run: str | None = None) -> str:
    """The model whose windows the app shows: asked for, the run's embeddings, or the first with logits."""
    models = sorted({m for m, _, _ in store.partitions(store_dir)})
    if not models:
        raise store.StoreError(f"{store_dir}: empty store (no partitions)")
    chosen = wanted or run_config(run).get("embeddings")
    if chosen:
        if chosen not in models:
            raise store.StoreError(f"{store_dir}: no rows for model={chosen} (models: {', '.join(models)})")
        return chosen
    with_logits = [m for m, d, _ in store.partitions(store_dir) if store.manifest(store_dir, m, d).get("labels")]
    return sorted(with_logits or models)[0]


def taxonomy_path(config: AppConfig) -> str | None:
    """--taxonomy, else the run's, else eBird_Taxonomy_v2021.csv beside an audio root's parent."""
    if config.taxonomy:
        return config.taxonomy
    found = run_config(config.run).get("train_config", {}).get("taxonomy")
    if found and Path(found).is_file():
        return found
    for root in all_audio_roots(config.store) + list(config.audio):
        for folder in (Path(root), Path(root).parent):
            if (folder / "eBird_Taxonomy_v2021.csv").is_file():
                return str(folder / "eBird_Taxonomy_v2021.csv")
    return None


def all_audio_roots(store_dir: str) -> list[str]:
    """Every partition's recorded audio folders, in order, once."""
    roots: list[str] = []
    for _, _, directory in store.partitions(store_dir):
        roots += [r for r in store.audio_roots(directory) if r not in roots]
    return roots


@dataclass
class Windows:
    """One model's windows: `table` (polars: row, dataset, file, window, start_s, end_s, species,
    folder, score:<sp>...), their embeddings [n, dim] and the score species (surrogate or head)."""

    table: object
    embeddings: np.ndarray
    species: list[str]
    scored_by: str  # "surrogate <model>" or "head <run>"


def load_windows(store_dir: str, model: str, run: str | None = None, taxonomy: str | None = None) -> Windows:
    import polars as pl

    frame = store.collect(store.scan(store_dir, model), store_dir, model)
    frame = frame.sort("dataset", "file", "window").with_row_index("row")
    embeddings = np.asarray(frame["embedding"].to_numpy(), dtype=np.float32).reshape(frame.height, -1)
    logits = frame["logits"].to_numpy() if "logits" in frame.columns and frame["logits"].null_count() == 0 else None
    logits = None if logits is None else np.asarray(logits, dtype=np.float32).reshape(frame.height, -1)
    species, scores, scored_by = _scores(store_dir, model, frame, embeddings, logits, run, taxonomy)
    table = frame.drop("embedding", "logits", strict=False).with_columns(
        folder=pl.when(pl.col("file").str.contains("/")).then(pl.col("file").str.replace(r"/[^/]*$", "")))
    if scores is not None:
        table = table.with_columns([pl.Series(SCORE_PREFIX + s, scores[:, j]) for j, s in enumerate(species)])
    return Windows(table, embeddings, species, scored_by)


def _scores(store_dir, model, frame, embeddings, logits, run, taxonomy):
    """Per-window probabilities: the run's head when there is one, else the surrogate's mapped logits."""
    if run and (Path(run) / "head.npz").is_file():
        names = json.loads((Path(run) / "species.json").read_text())
        names = names["species"] if isinstance(names, dict) else names
        raw = head_logits(load_head(run), embeddings, logits)
        return list(names), sigmoid(raw), f"head {run}"
    if logits is None:
        return [], None, "no scores (the model has no classifier)"
    dataset = frame["dataset"][0]
    mapping = surrogate_species(store.manifest(store_dir, model, dataset)["labels"],
                                read_taxonomy(taxonomy) if taxonomy else None)
    scores = sigmoid(mapping.species_logits(logits))
    keep = _kept_species(frame, mapping.names, scores)
    return [mapping.names[j] for j in keep], scores[:, keep], f"surrogate {model}"


def _kept_species(frame, names: list[str], scores: np.ndarray, top: int = 30) -> list[int]:
    """Folder species first, then the species with the highest peak score: a few thousand
    score columns would drown the pages."""
    folders = set(frame["species"].drop_nulls().unique().to_list())
    first = [j for j, name in enumerate(names) if name in folders]
    peaks = np.argsort(-scores.max(axis=0), kind="stable") if scores.size else []
    rest = [int(j) for j in peaks if int(j) not in first][:max(0, top - len(first))]
    return first + rest


def overview(store_dir: str) -> dict:
    """`birdemb info`'s rows, each partition's failures, species counts and the eda figures."""
    rows = store.info(store_dir)
    failures = {f"{m}/{d}": store.failures(directory) for m, d, directory in store.partitions(store_dir)}
    return {"info": rows, "failures": failures, "figures": eda_figures(store_dir)}


def species_counts(table) -> list[tuple[str, int, int]]:
    """(folder species, files, windows), most windows first."""
    import polars as pl

    counted = (table.filter(pl.col("species").is_not_null()).group_by("species")
               .agg(pl.col("file").n_unique().alias("files"), pl.len().alias("windows"))
               .sort(["windows", "species"], descending=[True, False]))
    return [(r["species"], r["files"], r["windows"]) for r in counted.iter_rows(named=True)]


def call_rate(table, species: list[str], threshold: float = 0.5) -> float | None:
    """The share of windows where some scored species passes the threshold."""
    columns = [SCORE_PREFIX + s for s in species if SCORE_PREFIX + s in table.columns]
    if not columns or table.height == 0:
        return None
    return float((table.select(columns).to_numpy() > threshold).any(axis=1).mean())


def eda_figures(store_dir: str) -> list[Path]:
    """PNG figures of `birdemb eda` reports found beside or inside the store (eda/, report/)."""
    base = Path(store_dir)
    found = []
    for folder in (base / "eda", base.parent / "eda", base / "report", base.parent / "report"):
        if folder.is_dir():
            found += sorted(folder.rglob("*.png"))
    return found
