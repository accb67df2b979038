"""CPU inference for the competition: bundle -> windows -> probabilities -> submission.csv.

Standalone by design. Besides the standard library it imports only numpy, soundfile, soxr,
a TFLite runtime and two birdemb modules that are themselves that light (audio: decoding and
THE window layout; rundir: the numpy head). jobs/kaggle_submit.py is this module with those
two inlined (birdemb/kaggle_script.py generates it), so the Kaggle script and `birdemb submit`
run one copy of the logic. Never import torch, lightning, tensorflow or polars here.

Per soundscape: decode once per backbone rate, cut windows with the bundle's layout, run the
backbone's .tflite (embedding output), pool frames into windows, apply the head, sigmoid.
Optional post-processing, in this order: sliding blend (per bundle), ensemble power average
(across bundles), global correction (per file). See docs/submission.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from birdemb.audio import AUDIO_EXTENSIONS, WindowLayout, frame_audio, load_audio, pool_windows
from birdemb.interpreter import TFLiteRunner
from birdemb.rundir import head_logits, load_head, sha256_file, sigmoid

BUNDLE_MANIFEST = "bundle.json"
BUNDLE_FORMAT = "birdemb-bundle"
SUBMISSION_WINDOW_S = 5.0  # ◆ one row per 5 s window
NOMINAL_SOUNDSCAPE_S = 240.0  # the competition's test soundscapes are 4 minutes long
SLIDING_SHIFT_S = 2.5
SLIDING_WEIGHTS = (0.5, 0.25, 0.25)  # the window itself, the shifted window before, after
BANNED_MODULES = ("torch", "lightning", "tensorflow", "polars")


class SubmitError(Exception):
    """A bundle or option that cannot produce a submission; the message says why."""


class SubmitWarning(UserWarning):
    """A soundscape scored with the default probability (unreadable, empty, or failed)."""


# ---------------------------------------------------------------- the TFLite runtime


# ---------------------------------------------------------------- bundles


@dataclass(frozen=True)
class Bundle:
    """What inference needs, with absolute paths (picklable, sent to worker processes)."""

    root: str
    species: tuple[str, ...]
    layout: WindowLayout
    backbone_file: str
    embedding_output: int  # index of the backbone's embedding among its outputs
    head_file: str
    fused_file: str | None = None  # backbone + head + sigmoid in one graph, if exported
    model: str = ""


def layout_from_dict(values: dict) -> WindowLayout:
    """Rebuild THE window layout from a store manifest's / run config's `layout` dict, and
    refuse one whose frame offsets no longer match (the layout code changed since)."""
    layout = WindowLayout(
        window_s=float(values["window_s"]),
        frame_s=float(values["frame_s"]),
        sample_rate=int(values["sample_rate"]),
        min_audio_s=float(values.get("min_audio_s", 1.0)),
    )
    stored = values.get("frame_offsets_s")
    if stored is not None and [round(float(o), 6) for o in stored] != layout.frame_offsets_s:
        raise SubmitError(f"layout frame offsets {stored} differ from today's {layout.frame_offsets_s}")
    return layout


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read BUNDLE/bundle.json; with `verify`, check every listed file against its sha256."""
    root = Path(path).resolve()
    manifest_path = root / BUNDLE_MANIFEST
    if not manifest_path.is_file():
        raise SubmitError(f"{root}: not a bundle (no {BUNDLE_MANIFEST}; make one with `birdemb bundle`)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise SubmitError(f"{manifest_path}: format {manifest.get('format')!r} is not {BUNDLE_FORMAT!r}")
    if verify:
        for name, digest in manifest["files"].items():
            file = root / name
            if not file.is_file():
                raise SubmitError(f"{root}: bundle file {name} is missing")
            if sha256_file(file) != digest:
                raise SubmitError(f"{root}: {name} does not match its sha256 in {BUNDLE_MANIFEST} (corrupt copy?)")
    species = json.loads((root / manifest["species"]).read_text())
    fused = manifest.get("fused")
    return Bundle(
        root=str(root),
        species=tuple(species),
        layout=layout_from_dict(manifest["layout"]),
        backbone_file=str(root / manifest["backbone"]["file"]),
        embedding_output=int(manifest["backbone"]["embedding_output"]),
        head_file=str(root / manifest["head"]),
        fused_file=str(root / fused) if fused else None,
        model=manifest["backbone"].get("model", ""),
    )


def open_bundle(path: str | Path) -> Bundle:
    """A bundle directory, or a run directory from train-head (resolved in place: its
    backbone .tflite comes from the model cache, which may need the backbone's toolchain)."""
    path = Path(path)
    if (path / BUNDLE_MANIFEST).is_file():
        return load_bundle(path)
    if (path / "config.json").is_file():
        from birdemb.bundle import bundle_from_run  # not in the Kaggle script: bundles only there

        return bundle_from_run(path)
    raise SubmitError(f"{path}: neither a bundle ({BUNDLE_MANIFEST}) nor a run directory (config.json)")


# ---------------------------------------------------------------- options and pure steps


@dataclass
class SubmitOptions:
    workers: int = 0  # processes; 0 = one per core
    batch: int = 32  # frames per interpreter call
    default_prob: float = 0.0  # every species, every row of a soundscape that cannot be scored
    sliding: bool = False
    global_correction: bool = False
    correction_threshold: float = 0.5
    correction_factor: float = 1.3
    engine: str = "two-step"  # or "fused": the bundle's one-graph .tflite
    min_last_window_s: float = 1.0  # a last window with less real audio gets no row
    nominal_duration_s: float = NOMINAL_SOUNDSCAPE_S  # row count when a file's length is unknown
    verbose: bool = False


def submission_layout(layout: WindowLayout, options: SubmitOptions) -> WindowLayout:
    """The bundle's layout with the submission's rule for the last window.

    Rows follow the windows the model scores: full 5 s windows, plus a last partial window
    only when it holds at least `min_last_window_s` of audio. A 240 s file gives 48 rows, and
    so do decodings a few milliseconds longer (padding) or shorter than 240 s."""
    if abs(layout.window_s - SUBMISSION_WINDOW_S) > 1e-9:
        raise SubmitError(
            f"the submission scores {SUBMISSION_WINDOW_S:g} s windows; this bundle's layout uses {layout.window_s:g} s"
        )
    return replace(layout, min_audio_s=options.min_last_window_s)


def row_ids(stem: str, n_rows: int) -> list[str]:
    """◆ `<stem>_<end second>` for windows [0, 5), [5, 10), ...: stem_5, stem_10, ..."""
    return [f"{stem}_{round(SUBMISSION_WINDOW_S * (k + 1))}" for k in range(n_rows)]


def sliding_blend(p: np.ndarray, shifted: np.ndarray) -> np.ndarray:
    """Blend window k with the shifted windows that overlap it by half.

    p[k] scores [5k, 5k+5); shifted[j] scores [5j+2.5, 5j+7.5), so shifted[k-1] starts at
    5k-2.5 and shifted[k] at 5k+2.5. Result: 0.5 p[k] + 0.25 shifted[k-1] + 0.25 shifted[k];
    where a neighbour does not exist (k = 0, or past the file's end) the weights of those that
    do are renormalised to sum to one."""
    w_self, w_before, w_after = SLIDING_WEIGHTS
    n, m = len(p), len(shifted)
    total = np.full((n, 1), w_self, dtype=np.float64)
    blended = w_self * p.astype(np.float64)
    k = np.arange(n)
    before = (k - 1 >= 0) & (k - 1 < m)
    after = k < m
    blended[before] += w_before * shifted[k[before] - 1]
    total[before] += w_before
    blended[after] += w_after * shifted[k[after]]
    total[after] += w_after
    return (blended / total).astype(np.float32)


def power_mean(probabilities: list[np.ndarray]) -> np.ndarray:
    """Ensemble: sqrt(mean(p^2)) element-wise (leans towards the confident members)."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    return np.sqrt(np.mean(stacked**2, axis=0)).astype(np.float32)


def global_correction(p: np.ndarray, threshold: float = 0.5, factor: float = 1.3) -> np.ndarray:
    """Multiply a species' scores over a whole file by `factor` when its maximum in that file
    exceeds `threshold`. Not clipped: the metric ranks, and clipping would create ties."""
    boost = np.where(p.max(axis=0, keepdims=True) > threshold, factor, 1.0)
    return (p * boost).astype(np.float32)


def fit_rows(p: np.ndarray, n_rows: int) -> np.ndarray:
    """Trim, or repeat the last row, so an ensemble member decoded at another rate whose last
    window rounded differently lines up with the first member's rows."""
    if len(p) >= n_rows:
        return p[:n_rows]
    return np.concatenate([p, np.repeat(p[-1:], n_rows - len(p), axis=0)])


def expected_rows(path: str | Path, layout: WindowLayout, nominal_s: float = NOMINAL_SOUNDSCAPE_S) -> int:
    """Rows for a file that could not be scored: from its header's duration when soundfile
    can read one, else the competition's nominal 240 s (48 rows)."""
    seconds = 0.0
    try:
        import soundfile

        seconds = float(soundfile.info(str(path)).duration)
    except Exception:
        pass
    if not seconds > 0:
        seconds = nominal_s
    return layout.window_count(round(seconds * layout.sample_rate))


def list_soundscapes(audio_dir: str | Path) -> list[Path]:
    """The audio files directly in `audio_dir`, sorted by name (the submission's row order)."""
    root = Path(audio_dir)
    if not root.is_dir():
        raise SubmitError(f"{audio_dir}: no such folder")
    files = sorted(
        (p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    stems: dict[str, str] = {}
    for p in files:
        if p.stem in stems:
            raise SubmitError(f"{audio_dir}: {stems[p.stem]} and {p.name} would share row ids ({p.stem}_5, ...)")
        stems[p.stem] = p.name
    return files


# ---------------------------------------------------------------- scoring one soundscape


@dataclass
class FileScores:
    file: str
    probabilities: np.ndarray  # [rows, species]
    error: str | None = None  # set when the rows hold the default probability
    audio_s: float = 0.0


class Scorer:
    """Scores soundscapes with one or more bundles. Bundles sharing a backbone file and a
    layout share one backbone pass (an ensemble of heads costs one backbone)."""

    def __init__(self, bundles: list[Bundle], options: SubmitOptions):
        check_ensemble(bundles, options)
        self.bundles = bundles
        self.options = options
        self.layouts = [submission_layout(b.layout, options) for b in bundles]
        self.heads = [load_head(b.head_file) for b in bundles]
        self._nets: dict[str, TFLiteRunner] = {}

    def net(self, path: str) -> TFLiteRunner:
        if path not in self._nets:
            self._nets[path] = TFLiteRunner(path, threads=1, batch=self.options.batch)
        return self._nets[path]

    def score(self, path: str | Path) -> FileScores:
        """Never raises: a file that fails gets default rows and the reason."""
        path = Path(path)
        try:
            p, audio_s = self.probabilities(path)
            return FileScores(path.name, p, audio_s=audio_s)
        except Exception as error:
            reason = str(error) if type(error).__name__ == "AudioError" else f"{path}: {type(error).__name__}: {error}"
            n_rows = expected_rows(path, self.layouts[0], self.options.nominal_duration_s)
            p = np.full((n_rows, len(self.bundles[0].species)), self.options.default_prob, dtype=np.float32)
            return FileScores(path.name, p, error=reason)

    def decode(self, path: Path) -> dict[int, np.ndarray]:
        """The file once per sample rate the bundles need."""
        return {rate: load_audio(path, rate) for rate in sorted({lay.sample_rate for lay in self.layouts})}

    def probabilities(self, path: Path) -> tuple[np.ndarray, float]:
        audio = self.decode(path)
        per_bundle = self.bundle_probabilities(audio)
        n_rows = len(per_bundle[0])
        p = per_bundle[0] if len(per_bundle) == 1 else power_mean([fit_rows(q, n_rows) for q in per_bundle])
        if self.options.global_correction:
            p = global_correction(p, self.options.correction_threshold, self.options.correction_factor)
        first = self.layouts[0]
        return p, len(audio[first.sample_rate]) / first.sample_rate

    def bundle_probabilities(self, audio: dict[int, np.ndarray]) -> list[np.ndarray]:
        """Window probabilities per bundle (sliding-blended if asked)."""
        fused = self.options.engine == "fused"
        shared: dict[tuple, tuple] = {}
        results = []
        for bundle, layout, head in zip(self.bundles, self.layouts, self.heads):
            model_file = bundle.fused_file if fused else bundle.backbone_file
            key = (model_file, layout, bundle.embedding_output)
            if fused or key not in shared:
                shared[key] = self.window_outputs(model_file, bundle.embedding_output if not fused else 0,
                                                  audio[layout.sample_rate], layout, pool=not fused)
            main, shifted = shared[key]
            if fused:
                p, p_shifted = main, shifted
            else:
                p = sigmoid(head_logits(head, main))
                p_shifted = None if shifted is None else sigmoid(head_logits(head, shifted))
            if self.options.sliding:
                p = sliding_blend(p, p_shifted if p_shifted is not None else p[:0])
            results.append(p)
        return results

    def window_outputs(self, model_file: str, output: int, audio: np.ndarray, layout: WindowLayout, pool: bool):
        """One model output per window, for the windows and (sliding) the shifted windows,
        from a single batched pass over all their frames."""
        framings = [frame_audio(audio, layout)]
        if self.options.sliding:
            rest = audio[round(SLIDING_SHIFT_S * layout.sample_rate) :]
            if len(rest) >= max(1, round(layout.min_audio_s * layout.sample_rate)):
                framings.append(frame_audio(rest, layout))
        frames = np.concatenate([f.frames for f in framings])
        values = self.net(model_file).run(frames)[output]
        pooled, start = [], 0
        for framed in framings:
            part = values[start : start + len(framed.frames)]
            start += len(framed.frames)
            if pool:
                pooled.append(pool_windows(framed, part, None)[0])
            else:  # fused graph: one frame per window, outputs are already probabilities
                pooled.append(part.astype(np.float32, copy=False))
        return pooled[0], (pooled[1] if len(pooled) > 1 else None)


def check_ensemble(bundles: list[Bundle], options: SubmitOptions) -> None:
    if not bundles:
        raise SubmitError("no bundle or run given")
    first = bundles[0].species
    for bundle in bundles[1:]:
        if bundle.species != first:
            raise SubmitError(f"{bundle.root}: its species list differs from {bundles[0].root}'s; an ensemble needs one")
    if options.engine not in ("two-step", "fused"):
        raise SubmitError(f"unknown engine {options.engine!r}; choose two-step or fused")
    for bundle in bundles:
        if options.engine == "fused":
            if not bundle.fused_file:
                raise SubmitError(f"{bundle.root}: this bundle has no fused .tflite (only Vocalization bundles do)")
            if bundle.layout.frames_per_window != 1:
                raise SubmitError(f"{bundle.root}: a fused graph needs one frame per window")
        submission_layout(bundle.layout, options)


# ---------------------------------------------------------------- worker processes

_WORKER: dict = {}


def _worker_init(bundles: list[Bundle], options: SubmitOptions) -> None:
    _WORKER["scorer"] = Scorer(bundles, options)


def _worker_score(path: str) -> FileScores:
    return _WORKER["scorer"].score(path)


def score_files(bundles: list[Bundle], files: list[Path], options: SubmitOptions):
    """Yield FileScores in the order of `files`: a process pool with one 1-thread interpreter
    per process (files are independent, so this scales with cores), or in-process for one."""
    workers = min(options.workers or os.cpu_count() or 1, max(1, len(files)))
    if workers <= 1:
        scorer = Scorer(bundles, options)
        for path in files:
            yield scorer.score(path)
        return
    context = multiprocessing.get_context("spawn")  # interpreters do not survive fork
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(bundles, options)) as pool:
        yield from pool.map(_worker_score, [str(p) for p in files])


# ---------------------------------------------------------------- the submission


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

    def line(self) -> str:
        per = self.elapsed_s / self.files if self.files else 0.0
        return (
            f"{self.rows} rows x {self.species} species for {self.files} soundscapes "
            f"({len(self.failures)} scored with the default probability) in {self.elapsed_s:.1f} s "
            f"({per:.2f} s per file, {self.workers} workers) -> {self.out}"
        )


def format_row(row_id: str, values: np.ndarray) -> str:
    return row_id + "," + ",".join(f"{v:.7g}" for v in values.tolist()) + "\n"


def write_submission(
    bundle_or_run: str | Path | Bundle | list,
    audio_dir: str | Path,
    out: str | Path,
    options: SubmitOptions | None = None,
    **overrides,
) -> SubmitSummary:
    """Score every soundscape in `audio_dir` (sorted by name) and write ◆ the submission:
    `row_id` then one column per species in the bundle's species order. `bundle_or_run` is a
    bundle or run directory, a loaded Bundle, or a list of them (an ensemble)."""
    options = replace(options or SubmitOptions(), **overrides)
    started = time.perf_counter()
    sources = bundle_or_run if isinstance(bundle_or_run, (list, tuple)) else [bundle_or_run]
    bundles = [s if isinstance(s, Bundle) else open_bundle(s) for s in sources]
    check_ensemble(bundles, options)
    files = list_soundscapes(audio_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    species = bundles[0].species
    summary = SubmitSummary(str(out), species=len(species),
                            workers=min(options.workers or os.cpu_count() or 1, max(1, len(files))))
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


# ---------------------------------------------------------------- profile


@dataclass
class ProfileStage:
    name: str
    seconds: float  # CPU seconds of this process over the profiled files (one interpreter thread)
    audio_s: float
    wall_s: float = 0.0  # wall-clock seconds: larger when other jobs share the CPU

    @property
    def per_soundscape_s(self) -> float:
        """CPU seconds per 4-minute soundscape: the time one core needs when it is ours alone."""
        return self.seconds / self.audio_s * NOMINAL_SOUNDSCAPE_S if self.audio_s else float("nan")

    def projected_minutes(self, cores: int, soundscapes: int = 1100) -> float:
        return soundscapes * self.per_soundscape_s / cores / 60.0


@dataclass
class Profile:
    stages: list[ProfileStage]
    files: int
    cores: int
    model: str
    budget_minutes: float = 120.0

    def stage(self, name: str) -> ProfileStage:
        return next(s for s in self.stages if s.name == name)

    @property
    def head_throughput_ratio(self) -> float:
        """Throughput of backbone+head relative to the backbone alone (target >= 0.9)."""
        return self.stage("backbone only").seconds / self.stage("backbone + head").seconds

    def markdown(self, soundscapes: int = 1100, compare_cores: int = 4) -> str:
        lines = [
            f"| stage ({self.model}) | CPU s per 4-min soundscape, 1 core | wall s (shared CPU) | projected min, {soundscapes:,} soundscapes, "
            f"{self.cores} cores (this machine) | projected min, {compare_cores} cores |",
            "|---|---:|---:|---:|---:|",
        ]
        for s in self.stages:
            lines.append(
                f"| {s.name} | {s.per_soundscape_s:.2f} | {s.wall_s / s.audio_s * NOMINAL_SOUNDSCAPE_S:.2f} | {s.projected_minutes(self.cores, soundscapes):.1f} "
                f"| {s.projected_minutes(compare_cores, soundscapes):.1f} |"
            )
        full = self.stage("backbone + head")
        fits = full.projected_minutes(self.cores, soundscapes) <= self.budget_minutes
        lines += [
            "",
            f"Measured on the first {self.files} soundscape(s) ({self.stages[0].audio_s:.0f} s of audio), one process "
            f"with a 1-thread interpreter; each stage includes the ones above it (decode -> frames -> backbone -> "
            f"pool + head + sigmoid). Projections use the process's CPU time (robust to other jobs on a shared machine, unlike the wall column) and scale it linearly to N cores (one interpreter per "
            f"process, files independent); the {compare_cores}-core column is projected, not measured.",
            f"backbone + head runs at {self.head_throughput_ratio:.2f}x the backbone-only throughput (target >= 0.9). "
            f"On {self.cores} cores the submission projects to {full.projected_minutes(self.cores, soundscapes):.1f} "
            f"min of the {self.budget_minutes:.0f}-minute budget: {'fits' if fits else 'DOES NOT FIT'}.",
        ]
        return "\n".join(lines)


def profile(
    bundle_or_run, audio_dir: str | Path, n_files: int = 3, options: SubmitOptions | None = None, cores: int | None = None
) -> Profile:
    """Time decode only, + backbone, + head on the first `n_files` soundscapes (Table 7)."""
    options = replace(options or SubmitOptions(), workers=1)
    sources = bundle_or_run if isinstance(bundle_or_run, (list, tuple)) else [bundle_or_run]
    bundles = [s if isinstance(s, Bundle) else open_bundle(s) for s in sources]
    scorer = Scorer(bundles, options)
    files = []
    for path in list_soundscapes(audio_dir):  # the first N that decode: failures are not timings
        if len(files) >= max(1, n_files):
            break
        try:
            scorer.decode(path)
            files.append(path)
        except Exception:
            continue
    if not files:
        raise SubmitError(f"{audio_dir}: no readable soundscapes to profile")
    scorer.probabilities(files[0])  # warm-up: tensor allocation and page cache, untimed

    def decode_only(path):
        return scorer.decode(path)

    def backbone_only(path):
        audio = scorer.decode(path)
        fused = options.engine == "fused"
        for bundle, layout in zip(bundles, scorer.layouts):  # every frame the full path runs (sliding too)
            model_file = bundle.fused_file if fused else bundle.backbone_file
            scorer.window_outputs(model_file, 0 if fused else bundle.embedding_output,
                                  audio[layout.sample_rate], layout, pool=not fused)

    def backbone_and_head(path):
        scorer.probabilities(path)

    steps = (("decode only", decode_only), ("backbone only", backbone_only), ("backbone + head", backbone_and_head))
    seconds = {name: 0.0 for name, _ in steps}
    wall = {name: 0.0 for name, _ in steps}
    audio_s = 0.0
    for path in files:  # stages interleaved per file, so a busy moment on a shared CPU hits all
        for name, step in steps:
            t0, c0 = time.perf_counter(), time.process_time()
            step(path)
            seconds[name] += time.process_time() - c0
            wall[name] += time.perf_counter() - t0
        first = scorer.layouts[0]
        audio_s += len(scorer.decode(path)[first.sample_rate]) / first.sample_rate
    stages = [ProfileStage(name, seconds[name], audio_s, wall[name]) for name, _ in steps]
    model = "+".join(sorted({b.model or "?" for b in bundles}))
    return Profile(stages, len(files), cores or os.cpu_count() or 1, model)


# ---------------------------------------------------------------- command line (shared)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `birdemb submit` and jobs/kaggle_submit.py (inputs are added by each)."""
    parser.add_argument("--audio", required=True, help="folder of soundscapes (e.g. test_soundscapes/)")
    parser.add_argument("--out", required=True, help="where to write submission.csv")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    parser.add_argument("--batch", type=int, default=32, help="frames per interpreter call (default 32)")
    parser.add_argument("--default-prob", type=float, default=0.0,
                        help="probability written for every row of an unreadable soundscape (default 0)")
    parser.add_argument("--sliding", action="store_true",
                        help="also score windows shifted by 2.5 s and blend 0.5/0.25/0.25")
    parser.add_argument("--global-correction", action="store_true",
                        help="x factor for a species' scores in a file whose maximum exceeds the threshold")
    parser.add_argument("--correction-threshold", type=float, default=0.5)
    parser.add_argument("--correction-factor", type=float, default=1.3)
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
        min_last_window_s=args.min_last_window_s, verbose=not args.quiet,
    )


def run_from_args(sources: list, args) -> int:
    """Profile (if asked), write the submission, report failures."""
    options = options_from_args(args)
    if args.profile:
        print(profile(sources, args.audio, args.profile, options).markdown(), flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubmitWarning)  # reported below, once, as a list
        summary = write_submission(sources, args.audio, args.out, options)
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
    except SubmitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
