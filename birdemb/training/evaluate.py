"""Score a run's head, or the surrogate alone (passthrough), against ground truth: folder
labels of held-out files or annotations, window by window and file by file (max over a
file's windows), with the competition's macro ROC-AUC, the 2023 padded cmAP, F1 at a
threshold, per-species tables and ROC / precision-recall curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb.errors import UsageError
from birdemb.runtime.head import load_head
from birdemb.training import metrics, rundir
from birdemb.training.config import DataOptions, LabelOptions, TrainConfig
from birdemb.training.prepare import head_scores, passthrough_scores, prepare, split, validation_target

REPORT = "evaluation.md"
RESULTS = "evaluation.json"
FIGURE = "roc_pr.png"


def config_from_run(run_dir: str | Path, **overrides) -> TrainConfig:
    """The TrainConfig a run was trained with (so the same split and labels are rebuilt)."""
    saved = rundir.read_json(run_dir, rundir.CONFIG)["train_config"]
    return TrainConfig.from_flat({**saved, **{k: v for k, v in overrides.items() if v is not None}})


def evaluate(data: DataOptions, labels: LabelOptions, run_dir: str | Path | None = None, threshold: float = 0.5,
             all_files: bool = False, out: str | Path | None = None) -> dict:
    """Head (with `run_dir`) and passthrough on the same windows: the held-out files of the
    split (a run's own), or every file with ground truth (`all_files`, passthrough only)."""
    if not 0 < threshold < 1:
        raise UsageError(f"`eval_threshold` must be a probability between 0 and 1 (got {threshold:g})")
    prepared = prepare(data, labels)
    if all_files:
        if run_dir is not None:
            raise UsageError("`all_files` scores the passthrough alone: a run is scored on its held-out files")
        if prepared.truth is None:
            raise UsageError("no ground truth: the rows have no folder species and no `annotations` were given")
        rows = np.flatnonzero(prepared.truth_rows)
        target, source = prepared.truth[rows], prepared.truth_source
    else:
        _, val_rows = split(data, prepared)
        rows, target, source = validation_target(prepared, val_rows)
    scorers: dict[str, np.ndarray] = {}
    if run_dir is not None:
        species = rundir.read_json(run_dir, rundir.SPECIES)
        if species != prepared.species:
            raise rundir.RunError(f"{run_dir}: the run's species list differs from this data's")
        try:
            scorers["head"] = head_scores(load_head(run_dir), prepared, rows)
        except UsageError as error:
            raise UsageError(f"{run_dir}: {error}") from None
    if prepared.species_logits is not None:
        scorers["passthrough"] = prepared.species_logits[rows]
    if not scorers:
        raise UsageError("nothing to score: no run was given and the surrogate has no logits for these species")
    groups = prepared.groups[rows]
    result = {
        "truth": source,
        "label_scheme": labels.scheme,
        "threshold": threshold,
        "val_windows": int(len(rows)),
        "val_files": int(len(set(groups.tolist()))),
        "bad_windows": prepared.bad_windows,  # left out: embedding or logits held NaN or inf
        "mapping": prepared.mapping.as_dict(),
        "passthrough": passthrough_scores(prepared, rows, target),
        "head": metrics.score(target, scorers["head"], prepared.species) if "head" in scorers else None,
        "results": {name: metrics.evaluation(target, logits, prepared.species, groups, threshold)
                    for name, logits in scorers.items()},
    }
    if out is not None:
        write_report(result, scorers, target, prepared.species, Path(out))
    return result


def write_report(result: dict, scorers: dict, target: np.ndarray, species: list[str], out: Path) -> Path:
    from birdemb.training.plots import roc_pr_figure

    out.mkdir(parents=True, exist_ok=True)
    rundir.write_json(out, RESULTS, result)
    roc_pr_figure(target, scorers, species, out / FIGURE, title=f"against {result['truth']}")
    (out / REPORT).write_text(report_markdown(result) + f"\n\n![ROC and precision-recall]({FIGURE})\n")
    return out / REPORT


def report_markdown(result: dict) -> str:
    lines = [f"# Evaluation against {result['truth']}", "",
             f"{result['val_windows']} windows of {result['val_files']} files; F1 at probability "
             f"{result['threshold']:g}; species mapping: {result['mapping']['report']}.", ""]
    for level, title in (("windows", "Window level"), ("files", "File level (max over a file's windows)")):
        lines += [f"## {title}", "", metrics.markdown_table(result["results"], level), "",
                  metrics.species_markdown(result["results"], level), ""]
    return "\n".join(lines)


def comparison_table(result: dict) -> str:
    return metrics.markdown_table(result["results"], "windows")
