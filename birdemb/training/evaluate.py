"""Passthrough: score the surrogate's own mapped logits on the validation windows of a run,
and (given a run directory) the trained head on the very same windows."""
from __future__ import annotations

from pathlib import Path

from birdemb.runtime.head import head_logits, load_head
from birdemb.training import metrics, rundir
from birdemb.training.config import DataOptions, LabelOptions, TrainConfig
from birdemb.training.prepare import passthrough_scores, prepare, split


def config_from_run(run_dir: str | Path, **overrides) -> TrainConfig:
    """The TrainConfig a run was trained with (so the same split and labels are rebuilt)."""
    saved = rundir.read_json(run_dir, rundir.CONFIG)["train_config"]
    return TrainConfig.from_flat({**saved, **{k: v for k, v in overrides.items() if v is not None}})


def evaluate(data: DataOptions, labels: LabelOptions, run_dir: str | Path | None = None) -> dict:
    """{"passthrough": scores, "head": scores or None, "val_windows", "val_files"}."""
    prepared = prepare(data, labels)
    _, val_rows = split(data, prepared)
    result = {
        "label_scheme": labels.scheme,
        "val_windows": int(len(val_rows)),
        "val_files": int(len(set(prepared.groups[val_rows].tolist()))),
        "mapping": prepared.mapping.as_dict(),
        "passthrough": passthrough_scores(prepared, val_rows),
        "head": None,
    }
    if run_dir is not None:
        species = rundir.read_json(run_dir, rundir.SPECIES)
        if species != prepared.species:
            raise rundir.RunError(f"{run_dir}: the run's species list differs from this data's")
        logits = head_logits(load_head(run_dir), prepared.windows.embeddings[val_rows])
        result["head"] = metrics.score(prepared.labels[val_rows], logits, prepared.species)
    return result


def comparison_table(result: dict) -> str:
    lines = ["| scorer | val macro AUROC | val macro F1 | scored species |", "|---|---|---|---|"]
    for name in ("head", "passthrough"):
        scores = result.get(name)
        if scores:
            lines.append(f"| {name} | {scores['macro_auroc']:.4f} | {scores['macro_f1']:.4f} | {scores['scored_species']} |")
    return "\n".join(lines)
