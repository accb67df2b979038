"""One file into rows: decode in blocks, frame, run the backbone, pool frames into windows. The
same function runs in the parent, in local pool processes and in Ray actors."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from birdemb.backbones import Backbone, load_backbone
from birdemb.extract.discovery import AudioItem
from birdemb.extract.progress import Counter, FileProgress
from birdemb.runtime.audio import DECODE_BLOCK_S, AudioError, WindowLayout, pool_windows
from birdemb.runtime.lifecycle import die_with_parent
from birdemb.runtime.stream import WindowStream, resampled_blocks
from birdemb.store import FileRows


def backbone_kwargs(config) -> dict:
    """The backbone's constructor keywords from an ExtractConfig."""
    return {"weights": config.weights, "threads": config.threads, "batch": config.batch, **config.model_options}


def file_rows(
    backbone: Backbone,
    layout: WindowLayout,
    root: Path,
    item: AudioItem,
    block_s: float = DECODE_BLOCK_S,
    progress: Callable[[float], None] | None = None,
) -> FileRows:
    """Decode one file in blocks of `block_s` seconds, run the windows each block completes
    through the backbone and pool them, so memory does not grow with the recording's length.
    `progress(seconds_done)` is called after each block's windows; a damaged or truncated file
    raises AudioError (never a partial success)."""
    windows = WindowStream(resampled_blocks(root / item.file, layout.sample_rate, block_s), layout)
    embeddings, logits = [], []
    for framed in windows:
        embedding, pooled = pool_windows(framed, *backbone.embed(framed.frames))
        embeddings.append(embedding)
        logits.append(pooled)
        if progress is not None:
            progress(windows.seconds)
    start_s, end_s = layout.window_times(windows.n_windows)
    return FileRows(
        file=item.file,
        species=item.species,
        secondary_labels=list(item.secondary_labels),
        duration_s=windows.seconds,
        start_s=start_s,
        end_s=end_s,
        embedding=np.concatenate(embeddings),
        logits=None if logits[0] is None else np.concatenate(logits),
    )


def attempt(backbone: Backbone, layout: WindowLayout, root: Path, item: AudioItem, in_flight: Counter | None = None):
    """FileRows, or the error message that names the file and the problem. With `in_flight`,
    the seconds done are added to it block by block, and at the end exactly the file's
    duration stays there if it succeeded (the parent moves it to the finished total), none if
    it failed."""
    hook = None if in_flight is None else FileProgress(in_flight)
    result = _rows_or_message(backbone, layout, root, item, hook)
    if hook is not None:
        hook(result.duration_s if isinstance(result, FileRows) else 0.0)
    return result


def _rows_or_message(backbone, layout, root, item, hook):
    try:
        return file_rows(backbone, layout, root, item, progress=hook)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a model error on one file must not stop the job
        return f"{root / item.file}: {type(error).__name__}: {error}"


# ---------------------------------------------------------------- pool processes: one backbone each

_WORKER: dict = {}


def init_process(model: str, kwargs: dict, layout: WindowLayout, root: str, in_flight: Counter | None = None) -> None:
    """`in_flight`: the job's SharedSeconds, which can only reach a worker here, at its creation."""
    die_with_parent()  # never outlive the job, even after its kill -9
    _WORKER.update(backbone=load_backbone(model, **kwargs), layout=layout, root=Path(root), in_flight=in_flight)


def run_in_process(item: AudioItem):
    return attempt(_WORKER["backbone"], _WORKER["layout"], _WORKER["root"], item, _WORKER["in_flight"])

