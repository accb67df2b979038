"""Where file_rows puts a file's rows as the backbone makes them: in memory for a short file (the
parent stores it with others in one part), streamed to a part of its own once a long file's rows
pass the job's bound, so no process holds more than that bound of rows whatever the file's
length (see birdemb.store.spill)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from birdemb.extract.discovery import AudioItem
from birdemb.runtime.audio import WindowLayout
from birdemb.store import FileRows, Spill, Spilled, SpillPart, SpillTarget


@dataclass(frozen=True)
class SpillPlan:
    """A job's spilling: where, and the fingerprints (taken before decoding) of the files that
    may spill, those stored nowhere yet."""

    target: SpillTarget
    prints: dict[str, dict]

    def spill(self, item: AudioItem) -> Spill | None:
        return spill_of(self.target, self.prints.get(item.file))


def spill_of(target: SpillTarget | None, fingerprint: dict | None) -> Spill | None:
    """A file may spill only into a target, and only with a fingerprint for its part's footer."""
    return None if target is None or fingerprint is None else Spill(target, fingerprint)


class RowSink:
    """A file's pooled windows, group by group. Without `spill` they all stay in memory; with it,
    once `spill.target.max_rows` windows are held they are appended to a SpillPart and dropped.
    `finish` gives FileRows or the Spilled part; `discard` removes whatever was spilled."""

    def __init__(self, item: AudioItem, layout: WindowLayout, spill: Spill | None = None):
        self.item = item
        self.layout = layout
        self.spill = spill
        self._embeddings: list[np.ndarray] = []
        self._logits: list[np.ndarray | None] = []
        self._held = 0  # windows in memory
        self._part: SpillPart | None = None

    def add(self, embedding: np.ndarray, logits: np.ndarray | None) -> None:
        self._embeddings.append(embedding)
        self._logits.append(logits)
        self._held += len(embedding)
        if self.spill is not None and self._held >= self.spill.target.max_rows:
            self._write_held()

    def finish(self, duration_s: float) -> FileRows | Spilled:
        if self._part is None:
            start_s, end_s = self.layout.window_times(self._held)
            embedding, logits = self._take()
            return FileRows(self.item.file, self.item.species, list(self.item.secondary_labels), duration_s,
                            start_s, end_s, embedding, logits)
        if self._held:
            self._write_held()
        return self._part.close(duration_s)

    def discard(self) -> None:
        if self._part is not None:
            self._part.discard()

    def _write_held(self) -> None:
        if self._part is None:
            self._part = SpillPart(self.spill, self.item.file, self.item.species, list(self.item.secondary_labels))
        first = self._part.n_windows
        start_s, end_s = self.layout.window_times(first + self._held)  # the in-memory path's times, from window `first`
        self._part.append(start_s[first:], end_s[first:], *self._take())

    def _take(self) -> tuple[np.ndarray, np.ndarray | None]:
        embedding = np.concatenate(self._embeddings)
        logits = None if self._logits[0] is None else np.concatenate(self._logits)
        self._embeddings, self._logits, self._held = [], [], 0
        return embedding, logits
