"""Retrain from the app: `python -m birdemb train-head` on the store plus the app's labels,
in a background process whose output goes to a log beside the new run directory; then the
new run's ground-truth metrics beside the previous run's (from each run's metrics.json)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from birdemb.training.rundir import CONFIG, METRICS

_JOBS: dict[str, subprocess.Popen] = {}  # run dir -> process, for this server's lifetime
# the previous run's data options a retrain keeps, so the two runs are compared on the same split
CARRIED = ("metadata", "taxonomy", "species_list", "val_fraction", "seed", "datasets")


def command(store_dir: str, embeddings: str, surrogate: str, annotations: str | Path, out: str | Path,
            labels: str = "annotations", previous: str | None = None, taxonomy: str | None = None,
            extra: list[str] | None = None) -> list[str]:
    """The train-head command line (the previous run's species list, metadata, taxonomy and split
    kept; `taxonomy` where the previous run names none)."""
    argv = [sys.executable, "-m", "birdemb", "train-head", "--store", str(store_dir), "--embeddings", embeddings,
            "--surrogate", surrogate, "--labels", labels, "--annotations", str(annotations), "--out", str(out)]
    config = json.loads((Path(previous) / CONFIG).read_text()) if previous and (Path(previous) / CONFIG).is_file() \
        else {}
    config = config.get("train_config", config)
    for name in CARRIED:
        value = config.get(name)
        if value is not None and value != []:
            flag = "--dataset" if name == "datasets" else f"--{name.replace('_', '-')}"
            argv += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    if taxonomy and "--taxonomy" not in argv:
        argv += ["--taxonomy", str(taxonomy)]
    return argv + list(extra or [])


def next_run_dir(workdir: str | Path) -> Path:
    runs = Path(workdir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = runs / f"run-{stamp}", 1
    while candidate.exists():
        candidate, n = runs / f"run-{stamp}-{n}", n + 1
    return candidate


def log_path(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".log")


def start(argv: list[str], run_dir: str | Path) -> subprocess.Popen:
    """Start train-head in the background; its output goes to `<run dir>.log`."""
    log = log_path(run_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        handle.write("$ " + " ".join(argv[1:]) + "\n")
        handle.flush()
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _JOBS[str(run_dir)] = process
    return process


@dataclass
class Status:
    run_dir: str
    state: str  # "running", "done", "failed" or "unknown"
    log_tail: list[str] = field(default_factory=list)
    returncode: int | None = None


def status(run_dir: str | Path, lines: int = 12) -> Status:
    run_dir = Path(run_dir)
    log = log_path(run_dir)
    tail = log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else []
    process = _JOBS.get(str(run_dir))
    code = process.poll() if process is not None else None
    if process is not None and code is None:
        return Status(str(run_dir), "running", tail)
    if (run_dir / METRICS).is_file() and code in (0, None):
        return Status(str(run_dir), "done", tail, code)
    return Status(str(run_dir), "failed" if process is not None else "unknown", tail, code)


def wait(run_dir: str | Path, timeout_s: float | None = None) -> Status:
    process = _JOBS.get(str(run_dir))
    if process is not None:
        process.wait(timeout_s)
    return status(run_dir)


def summary(run_dir: str | Path) -> dict:
    """A run's ground-truth numbers (metrics.json), flat, for a side-by-side table."""
    m = json.loads((Path(run_dir) / METRICS).read_text())
    passthrough = m.get("passthrough") or {}
    counts = m.get("counts", {})
    return {
        "truth": m.get("truth"),
        "labels": m.get("label_scheme"),
        "head macro AUROC": m.get("val_macro_auroc"),
        "head macro F1": m.get("val_macro_f1"),
        "passthrough macro AUROC": passthrough.get("macro_auroc"),
        "file-level head AUROC": (m.get("files") or {}).get("head_macro_auroc"),
        "training windows": counts.get("train_windows"),
        "held-out files": counts.get("val_files"),
        "scored species": m.get("scored_species"),
    }


def compare(previous: str | None, new: str) -> list[dict]:
    """Rows `metric, previous, new` (previous blank when there is none)."""
    new_values = summary(new)
    old_values = summary(previous) if previous and (Path(previous) / METRICS).is_file() else {}
    return [{"metric": key, "previous": _text(old_values.get(key)), "new": _text(value)}
            for key, value in new_values.items()]


def _text(value) -> str:
    if value is None:
        return "n/a"  # not "-": st.table renders a lone dash as a bullet
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return str(len(value))
    return str(value)
