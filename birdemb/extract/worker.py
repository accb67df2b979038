"""One file into rows: decode in blocks, frame, run the backbone, pool frames into windows. The
same function runs in the parent, in local pool processes and in Ray actors."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from birdemb.backbones import Backbone, load_backbone
from birdemb.extract.discovery import AudioItem
from birdemb.extract.progress import Counter, FileProgress
from birdemb.extract.sink import RowSink, spill_of
from birdemb.runtime.audio import DECODE_BLOCK_S, AudioError, WindowLayout, pool_windows
from birdemb.runtime.lifecycle import die_with_parent
from birdemb.runtime.stream import WindowStream, resampled_blocks
from birdemb.store import FileRows, Spill, Spilled, SpillTarget, StoreError


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
    spill: Spill | None = None,
) -> FileRows | Spilled:
    """Decode one file in blocks of `block_s` seconds, run the windows each block completes
    through the backbone and pool them, so memory does not grow with the recording's length.
    `progress(seconds_done)` is called after each block's windows; a damaged or truncated file
    raises AudioError (never a partial success). With `spill`, rows past its bound go to a part
    of their own on disk (Spilled), so neither do the rows held; whatever ends the file early
    removes what it spilled."""
    windows = WindowStream(resampled_blocks(root / item.file, layout.sample_rate, block_s), layout)
    sink = RowSink(item, layout, spill)
    try:
        for framed in windows:
            sink.add(*pool_windows(framed, *backbone.embed(framed.frames)))
            if progress is not None:
                progress(windows.seconds)
        return sink.finish(windows.seconds)
    except BaseException:
        sink.discard()
        raise


def attempt(backbone: Backbone, layout: WindowLayout, root: Path, item: AudioItem, in_flight: Counter | None = None,
            spill: Spill | None = None):
    """FileRows (or Spilled, with `spill`), or the error message that names the file and the
    problem. With `in_flight`, the seconds done are added to it block by block, and at the end
    exactly the file's duration stays there if it succeeded (the parent moves it to the
    finished total), none if it failed."""
    hook = None if in_flight is None else FileProgress(in_flight)
    result = _rows_or_message(backbone, layout, root, item, hook, spill)
    if hook is not None:
        hook(0.0 if isinstance(result, str) else result.duration_s)
    return result


def _rows_or_message(backbone, layout, root, item, hook, spill):
    try:
        return file_rows(backbone, layout, root, item, progress=hook, spill=spill)
    except AudioError as error:
        return str(error)
    except StoreError:
        raise  # spilled rows could not be written (a full disk): the job stops, as for its own writes
    except Exception as error:  # a model error on one file must not stop the job
        return f"{root / item.file}: {type(error).__name__}: {error}"


# ---------------------------------------------------------------- pool processes: one backbone each

_WORKER: dict = {}


def init_process(model: str, kwargs: dict, layout: WindowLayout, root: str, in_flight: Counter | None = None,
                 spill: SpillTarget | None = None, started=None) -> None:
    """`in_flight`: the job's SharedSeconds, which can only reach a worker here, at its creation;
    `spill`: where long files spill (sent once per worker, not with every file); `started`: a
    shared count of the pool's workers that got this far, so the job can tell workers that
    cannot start from a file that kills one."""
    die_with_parent()  # never outlive the job, even after its kill -9
    _WORKER.update(backbone=load_backbone(model, **kwargs), layout=layout, root=Path(root), in_flight=in_flight,
                   spill=spill)
    if started is not None:
        with started.get_lock():
            started.value += 1


def run_in_process(item: AudioItem, fingerprint: dict | None = None):
    """`fingerprint`: the file's, when it may spill (a file stored nowhere yet)."""
    spill = spill_of(_WORKER["spill"], fingerprint)
    return attempt(_WORKER["backbone"], _WORKER["layout"], _WORKER["root"], item, _WORKER["in_flight"], spill)

