"""◆ submission.csv from soundscapes: `row_id` (`<file stem>_<end second>`) then one
probability column per species in the bundle's species order, one row per 5 s window; the
options shared by `birdemb submit` and the Kaggle script, and the script's entry point.

jobs/kaggle_submit.py is the runtime package inlined into one file (birdemb.deploy.kaggle_script
generates it), so the Kaggle script and `birdemb submit` run one copy of the logic. Never
import torch, lightning, tensorflow or polars here.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError
from birdemb.runtime.bundle_format import Bundle, load_bundle, open_bundles
from birdemb.runtime.profile import profile
from birdemb.runtime.scoring import SUBMISSION_WINDOW_S, SubmitOptions, check_ensemble, list_soundscapes, score_files

BANNED_MODULES = ("torch", "lightning", "tensorflow", "polars")


class SubmitWarning(UserWarning):
    """A soundscape scored with the default probability (unreadable, empty, or failed)."""


def row_ids(stem: str, n_rows: int) -> list[str]:
    """◆ `<stem>_<end second>` for windows [0, 5), [5, 10), ...: stem_5, stem_10, ..."""
    return [f"{stem}_{round(SUBMISSION_WINDOW_S * (k + 1))}" for k in range(n_rows)]



@dataclass
class SubmitSummary:
    out: str
    files: int = 0
    rows: int = 0
    species: int = 0
    workers: int = 0
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    failures: dict = field(default_factory=dict)
    blend: float = 1.0  # weight of the head against the passthrough (1: the head alone)
    masked_files: int = 0  # soundscapes with a species mask (location filter)
    notes: list = field(default_factory=list)  # e.g. what the location filter kept

    def line(self) -> str:
        per = self.elapsed_s / self.files if self.files else 0.0
        blend = f", blend {self.blend:g} head + {1 - self.blend:g} passthrough" if self.blend < 1 else ""
        masked = f", species masked in {self.masked_files}" if self.masked_files else ""
        return (
            f"{self.rows} rows x {self.species} species for {self.files} soundscapes "
            f"({len(self.failures)} scored with the default probability{blend}{masked}) in {self.elapsed_s:.1f} s "
            f"({per:.2f} s per file, {self.workers} workers) -> {self.out}"
        )


def format_row(row_id: str, values: np.ndarray) -> str:
    return row_id + "," + ",".join(f"{v:.7g}" for v in values.tolist()) + "\n"


def write_submission(
    bundle_or_run: str | Path | Bundle | list,
    audio_dir: str | Path,
    out: str | Path,
    options: SubmitOptions | None = None,
    opener=load_bundle,
    **overrides,
) -> SubmitSummary:
    """Score every soundscape in `audio_dir` (sorted by name) and write ◆ the submission:
    `row_id` then one column per species in the bundle's species order. `bundle_or_run` is a
    bundle or run directory, a loaded Bundle, or a list of them (an ensemble)."""
    options = replace(options or SubmitOptions(), **overrides)
    started = time.perf_counter()
    bundles = open_bundles(bundle_or_run, opener)
    check_ensemble(bundles, options)
    files = list_soundscapes(audio_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    species = bundles[0].species
    summary = SubmitSummary(str(out), species=len(species),
                            workers=min(options.workers or os.cpu_count() or 1, max(1, len(files))),
                            blend=options.blend,
                            masked_files=sum(p.stem in (options.species_masks or {}) for p in files))
    if not files:
        warnings.warn(f"{audio_dir}: no soundscapes; writing the header only", SubmitWarning, stacklevel=2)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "w", newline="") as handle:
        handle.write(",".join(["row_id", *species]) + "\n")
        for result in score_files(bundles, files, options):
            if result.error is not None:
                summary.failures[result.file] = result.error
                warnings.warn(
                    f"{result.error}; wrote {len(result.probabilities)} rows of probability {options.default_prob:g}",
                    SubmitWarning, stacklevel=2,
                )
            for row_id, values in zip(row_ids(Path(result.file).stem, len(result.probabilities)), result.probabilities):
                handle.write(format_row(row_id, values))
            summary.files += 1
            summary.rows += len(result.probabilities)
            summary.audio_s += result.audio_s
            if options.verbose and summary.files % 50 == 0:
                elapsed = time.perf_counter() - started
                print(f"  {summary.files}/{len(files)} soundscapes, {elapsed:.0f} s", file=sys.stderr, flush=True)
    tmp.replace(out)
    summary.elapsed_s = time.perf_counter() - started
    return summary


# ---------------------------------------------------------------- command line (shared)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `birdemb submit` and jobs/kaggle_submit.py (inputs are added by each)."""
    parser.add_argument("--audio", required=True, help="folder of soundscapes (e.g. test_soundscapes/)")
    parser.add_argument("--out", required=True, help="where to write submission.csv")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    parser.add_argument("--batch", type=int, default=8, help="frames per interpreter call (default 8)")
    parser.add_argument("--default-prob", type=float, default=0.0,
                        help="probability written for every row of an unreadable soundscape (default 0)")
    parser.add_argument("--sliding", action="store_true",
                        help="also score windows shifted by 2.5 s and blend 0.5/0.25/0.25")
    parser.add_argument("--global-correction", action="store_true",
                        help="x factor for a species' scores in a file whose maximum exceeds the threshold")
    parser.add_argument("--correction-threshold", type=float, default=0.5)
    parser.add_argument("--correction-factor", type=float, default=1.3)
    parser.add_argument("--blend", type=float, default=1.0, metavar="W",
                        help="W x head + (1 - W) x the backbone's own probability, for the species the backbone "
                             "knows (default 1: the head alone; 0: passthrough)")
    parser.add_argument("--engine", choices=["two-step", "fused"], default="two-step",
                        help="two-step: backbone .tflite then the numpy head; fused: the bundle's one-graph .tflite")
    parser.add_argument("--min-last-window-s", type=float, default=1.0,
                        help="a last partial window needs this much audio to get a row (default 1 s)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="first time decode / backbone / backbone+head on the first N soundscapes")
    parser.add_argument("--quiet", action="store_true")


def options_from_args(args) -> SubmitOptions:
    return SubmitOptions(
        workers=args.workers, batch=args.batch, default_prob=args.default_prob, sliding=args.sliding,
        global_correction=args.global_correction, correction_threshold=args.correction_threshold,
        correction_factor=args.correction_factor, engine=args.engine,
        min_last_window_s=args.min_last_window_s, verbose=not args.quiet, blend=args.blend,
    )


def run_from_args(sources: list, args, opener=load_bundle, options: SubmitOptions | None = None) -> int:
    """Profile (if asked), write the submission, report failures. `opener` turns each source
    path into a Bundle (birdemb.deploy adds run directories); `options`: the options already
    made from `args` (birdemb.deploy adds species masks)."""
    options = options or options_from_args(args)
    if args.profile:
        print(profile(sources, args.audio, args.profile, options, opener=opener).markdown(), flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubmitWarning)  # reported below, once, as a list
        summary = write_submission(sources, args.audio, args.out, options, opener=opener)
    print(summary.line())
    for file, error in summary.failures.items():
        print(f"  warning: {file}: default probability {options.default_prob:g} ({error})", file=sys.stderr)
    return 0


def script_main(argv: list[str] | None = None) -> int:
    """The Kaggle script's entry point: bundles only, no birdemb install needed."""
    parser = argparse.ArgumentParser(description="Write submission.csv from one or more birdemb bundles.")
    parser.add_argument("--bundle", action="append", default=None,
                        help="bundle folder (repeat for an ensemble; default: this script's folder)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    bundles = args.bundle or [str(Path(sys.argv[0]).resolve().parent)]
    try:
        return run_from_args([load_bundle(b) for b in bundles], args)
    except BirdembError as error:  # a bad bundle, option or folder: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
