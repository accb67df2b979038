"""Scoring soundscapes with one or more bundles: decode once per backbone rate, cut windows
with the bundle's layout, run the backbone's .tflite (embedding output), pool frames into
windows, apply the numpy head, sigmoid, post-process. In-process or one process per core."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from birdemb.runtime.audio import AUDIO_EXTENSIONS, WindowLayout, frame_audio, load_audio, pool_windows
from birdemb.runtime.bundle_format import Bundle, SubmitError
from birdemb.runtime.front_end import backbone_runner
from birdemb.runtime.head import head_logits, load_head, sigmoid
from birdemb.runtime.interpreter import TFLiteRunner
from birdemb.runtime.lifecycle import die_with_parent
from birdemb.runtime.postprocess import (
    SLIDING_SHIFT_S,
    apply_mask,
    blend_passthrough,
    fit_rows,
    global_correction,
    power_mean,
    sliding_blend,
)

SUBMISSION_WINDOW_S = 5.0  # ◆ one row per 5 s window
NOMINAL_SOUNDSCAPE_S = 240.0  # the competition's test soundscapes are 4 minutes long


@dataclass
class SubmitOptions:
    workers: int = 0  # processes; 0 = one per core
    batch: int = 8  # frames per interpreter call: a split BirdNET runs front end and network a batch at a time, in cache
    default_prob: float = 0.0  # every species, every row of a soundscape that cannot be scored
    sliding: bool = False
    global_correction: bool = False
    correction_threshold: float = 0.5
    correction_factor: float = 1.3
    engine: str = "two-step"  # or "fused": the bundle's one-graph .tflite
    min_last_window_s: float = 1.0  # a last window with less real audio gets no row
    nominal_duration_s: float = NOMINAL_SOUNDSCAPE_S  # row count when a file's length is unknown
    verbose: bool = False
    blend: float = 1.0  # blend * head + (1 - blend) * passthrough, for the species the backbone knows
    # file stem -> per species True (kept) / False (probability 0), applied after post-processing
    # (e.g. the species expected at the file's place: birdemb.deploy.location_filter); absent: kept
    species_masks: dict | None = None


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
        self.heads = [load_head(b.head_file).with_columns(b.logit_columns) for b in bundles]
        for bundle, head in zip(bundles, self.heads):
            if head.uses_backbone_logits and bundle.logits_output is None:
                raise SubmitError(f"{bundle.root}: its head adds the backbone's own logits, but no logits output "
                                  "of the backbone is named (rebuild the bundle with `birdemb bundle`)")
        self.logits_outputs = [logits_output(b, h, options) for b, h in zip(bundles, self.heads)]
        self._nets: dict[str, object] = {}

    def net(self, bundle: Bundle, fused: bool):
        """The runner of the bundle's fused graph, or of its backbone (split where it ships one)."""
        path = bundle.fused_file if fused else bundle.backbone_file
        if path not in self._nets:
            self._nets[path] = (TFLiteRunner(path, threads=1, batch=self.options.batch) if fused else
                                backbone_runner(path, bundle.split, threads=1, batch=self.options.batch))
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
        bad = int(p.size - np.isfinite(p).sum())
        if bad:  # never written: `score` gives the file default rows and this reason instead
            raise SubmitError(f"the head gives {bad} NaN or infinite probabilities (of {p.size}); "
                              "the audio may be corrupt")
        p = apply_mask(p, (self.options.species_masks or {}).get(Path(path).stem))  # after all post-processing
        first = self.layouts[0]
        return p, len(audio[first.sample_rate]) / first.sample_rate

    def bundle_probabilities(self, audio: dict[int, np.ndarray]) -> list[np.ndarray]:
        """Window probabilities per bundle (sliding-blended if asked)."""
        fused = self.options.engine == "fused"
        shared: dict[tuple, tuple] = {}
        results = []
        for bundle, layout, head, logits in zip(self.bundles, self.layouts, self.heads, self.logits_outputs):
            model_file = bundle.fused_file if fused else bundle.backbone_file
            outputs = (0,) if fused else (bundle.embedding_output,) + (() if logits is None else (logits,))
            key = (model_file, layout, outputs)
            if fused or key not in shared:
                shared[key] = self.window_outputs(self.net(bundle, fused), outputs, audio[layout.sample_rate], layout,
                                                  pool=not fused)
            main, shifted = shared[key]
            if fused:
                p, p_shifted = main[0], None if shifted is None else shifted[0]
            else:
                p = self.head_probabilities(bundle, head, main)
                p_shifted = None if shifted is None else self.head_probabilities(bundle, head, shifted)
            if self.options.sliding:
                p = sliding_blend(p, p_shifted if p_shifted is not None else p[:0])
            results.append(p)
        return results

    def head_probabilities(self, bundle: Bundle, head, pooled: tuple) -> np.ndarray:
        """Sigmoid of the head on pooled (embedding[, logits]); blended with the passthrough if asked."""
        logits = pooled[1] if len(pooled) > 1 else None
        p = sigmoid(head_logits(head, pooled[0], logits)).astype(np.float32)
        if self.options.blend < 1:
            p = blend_passthrough(p, logits, bundle.passthrough_columns, self.options.blend)
        return p

    def window_outputs(self, net, outputs: tuple[int, ...], audio: np.ndarray, layout: WindowLayout, pool: bool):
        """Model outputs per window (the embedding, then the logits if asked), for the windows
        and (sliding) the shifted windows, from a single batched pass over all their frames."""
        framings = [frame_audio(audio, layout)]
        if self.options.sliding:
            rest = audio[round(SLIDING_SHIFT_S * layout.sample_rate) :]
            if len(rest) >= max(1, round(layout.min_audio_s * layout.sample_rate)):
                framings.append(frame_audio(rest, layout))
        # one framing (no sliding): its frames as they are, not a copy (a soundscape's are 55 MB)
        frames = framings[0].frames if len(framings) == 1 else np.concatenate([f.frames for f in framings])
        values = net.run(frames)
        pooled, start = [], 0
        for framed in framings:
            parts = [values[k][start : start + len(framed.frames)] for k in outputs]
            start += len(framed.frames)
            if pool:  # embeddings: mean over a window's frames; logits: max, as the store keeps them
                embedding, logits = pool_windows(framed, parts[0], parts[1] if len(parts) > 1 else None)
                pooled.append((embedding,) if logits is None else (embedding, logits))
            else:  # fused graph: one frame per window, outputs are already probabilities
                pooled.append(tuple(part.astype(np.float32, copy=False) for part in parts))
        return pooled[0], (pooled[1] if len(pooled) > 1 else None)


def logits_output(bundle: Bundle, head, options: SubmitOptions) -> int | None:
    """The backbone output holding the logits, when the head adds them or the passthrough blend
    needs them (one output: both read the same pooled logits), else None."""
    wanted = {bundle.logits_output} if head.uses_backbone_logits else set()
    if options.blend < 1:
        wanted.add(bundle.passthrough_output)
    if len(wanted) > 1:
        raise SubmitError(f"{bundle.root}: the head's logits output ({bundle.logits_output}) and the passthrough's "
                          f"({bundle.passthrough_output}) differ")
    return wanted.pop() if wanted else None


def check_ensemble(bundles: list[Bundle], options: SubmitOptions) -> None:
    if not bundles:
        raise SubmitError("no bundle or run given")
    if not 0.0 <= options.blend <= 1.0:
        raise SubmitError(f"`blend` must be between 0 and 1 (got {options.blend})")
    for stem, mask in (options.species_masks or {}).items():
        if len(mask) != len(bundles[0].species):
            raise SubmitError(f"{stem}: a species mask of {len(mask)} entries for {len(bundles[0].species)} species")
    first = bundles[0].species
    for bundle in bundles[1:]:
        if bundle.species != first:
            raise SubmitError(f"{bundle.root}: its species list differs from {bundles[0].root}'s; an ensemble needs one")
    if options.engine not in ("two-step", "fused"):
        raise SubmitError(f"unknown engine {options.engine!r}; choose two-step or fused")
    for bundle in bundles:
        if options.blend < 1 and options.engine == "fused":
            raise SubmitError("`blend` needs the two-step engine (the fused graph gives probabilities, not logits)")
        if options.blend < 1 and (bundle.passthrough_columns is None or bundle.passthrough_output is None):
            raise SubmitError(f"{bundle.root}: no passthrough columns to blend with ({bundle.passthrough_missing}); "
                              "rebuild it with `birdemb bundle ... --taxonomy eBird_Taxonomy_v2021.csv`")
        if options.blend < 1 and len(bundle.passthrough_columns) != len(bundle.species):
            raise SubmitError(f"{bundle.root}: {len(bundle.passthrough_columns)} passthrough columns for "
                              f"{len(bundle.species)} species")
        if options.engine == "fused":
            if not bundle.fused_file:
                raise SubmitError(f"{bundle.root}: this bundle has no fused .tflite (only backbones that can export their source graph give one)")
            if bundle.layout.frames_per_window != 1:
                raise SubmitError(f"{bundle.root}: a fused graph needs one frame per window")
        submission_layout(bundle.layout, options)


# ---------------------------------------------------------------- worker processes

_WORKER: dict = {}


def _worker_init(bundles: list[Bundle], options: SubmitOptions) -> None:
    die_with_parent()  # never outlive the job, even after its kill -9
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

