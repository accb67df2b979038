"""Search results as files: short clips cut from the original audio, and a Raven selection
table (BirdNET-Analyzer's columns, written by deploy's detection tables; for search the
Confidence column holds the cosine similarity). The store records each file's path relative
to the audio root it was extracted from, not the root itself, so the caller names the root."""
from __future__ import annotations

import os
import uuid
from pathlib import Path, PurePosixPath

from birdemb.deploy.detection_formats import Detection, TableOptions, begin_path
from birdemb.deploy.detection_tables import raven_header, raven_row
from birdemb.explore.search import Neighbour, SearchError
from birdemb.runtime.audio import read_span

CLIP_FORMATS = ("wav", "flac")


def clip_name(rank: int, neighbour: Neighbour, form: str) -> str:
    stem = PurePosixPath(neighbour.file).stem
    return f"{rank:02d}_{stem}_{neighbour.start_s:g}-{neighbour.end_s:g}s.{form}"


def audio_source(neighbour: Neighbour, audio_root=None, store_dir=None, model: str | None = None) -> Path:
    """The neighbour's recording: under `audio_root` when given, else under the audio folders
    its partition recorded (store/sources.py)."""
    from birdemb import store

    roots = [audio_root] if audio_root else (
        store.audio_roots(store.partition_dir(store_dir, model, neighbour.dataset)) if store_dir and model else [])
    for root in roots:
        if (Path(root) / neighbour.file).is_file():
            return Path(root) / neighbour.file
    where = f"under {', '.join(map(str, roots))}" if roots else "(the store records no audio folder: give `audio`)"
    raise SearchError(f"{neighbour.file}: recording not found {where}")


def write_clips(neighbours: list[Neighbour], audio_root, out_dir, form: str = "wav", store_dir=None,
                model: str | None = None) -> list[Path]:
    """One clip per neighbour, numbered by rank (01_ is the nearest); returns their paths. The
    audio comes from `audio_root`, or from the folders the store recorded (`store_dir`, `model`)."""
    import soundfile as sf

    if form not in CLIP_FORMATS:
        raise SearchError(f"clip format {form!r}: choose one of {', '.join(CLIP_FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, neighbour in enumerate(neighbours, 1):
        source = audio_source(neighbour, audio_root, store_dir, model)
        audio, rate = read_span(source, neighbour.start_s, neighbour.end_s)
        target = out_dir / clip_name(rank, neighbour, form)
        tmp = out_dir / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        sf.write(tmp, audio, rate, format=form.upper())
        os.replace(tmp, target)
        written.append(target)
    return written


def raven_text(neighbours: list[Neighbour], audio_root=None) -> str:
    """One selection per neighbour, in rank order; times on each file's own timeline."""
    options = TableOptions(audio_root=str(audio_root or ""))
    rows = []
    for selection, n in enumerate(neighbours, 1):
        species = n.species or ""
        detection = Detection(n.file, n.start_s, n.end_s, species, species, species, n.similarity)
        rows.append(raven_row(selection, detection, 0.0, options, begin_path(n.file, options)))
    return raven_header() + "".join(rows)


def write_raven(neighbours: list[Neighbour], path, audio_root=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(raven_text(neighbours, audio_root), encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path


def table(neighbours: list[Neighbour]) -> str:
    """The neighbours as a plain text table for the terminal."""
    width = max([len(n.file) for n in neighbours] + [4])
    lines = [f"{'rank':>4}  {'file':<{width}}  {'start':>7}  {'end':>7}  {'species':<10}  similarity"]
    for rank, n in enumerate(neighbours, 1):
        lines.append(f"{rank:>4}  {n.file:<{width}}  {n.start_s:>7.1f}  {n.end_s:>7.1f}  {n.species or '-':<10}  "
                     f"{n.similarity:.4f}")
    return "\n".join(lines)
