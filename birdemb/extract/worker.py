"""One file into rows: decode, frame, run the backbone, pool frames into windows. The same
function runs in the parent, in local pool processes and in Ray actors."""
from __future__ import annotations

from pathlib import Path

from birdemb.backbones import Backbone, load_backbone
from birdemb.extract.discovery import AudioItem
from birdemb.runtime.audio import AudioError, WindowLayout, frame_audio, load_audio, pool_windows
from birdemb.store import FileRows


def backbone_kwargs(config) -> dict:
    """The backbone's constructor keywords from an ExtractConfig."""
    return {"weights": config.weights, "threads": config.threads, "batch": config.batch, **config.model_options}


def file_rows(backbone: Backbone, layout: WindowLayout, root: Path, item: AudioItem) -> FileRows:
    """Decode one file, run its frames through the backbone, pool them into windows."""
    audio = load_audio(root / item.file, layout.sample_rate)
    framed = frame_audio(audio, layout)
    embeddings, logits = backbone.embed(framed.frames)
    embedding, pooled = pool_windows(framed, embeddings, logits)
    start_s, end_s = framed.window_times(layout)
    return FileRows(
        file=item.file,
        species=item.species,
        secondary_labels=list(item.secondary_labels),
        duration_s=len(audio) / layout.sample_rate,
        start_s=start_s,
        end_s=end_s,
        embedding=embedding,
        logits=pooled,
    )


def attempt(backbone: Backbone, layout: WindowLayout, root: Path, item: AudioItem):
    """FileRows, or the error message that names the file and the problem."""
    try:
        return file_rows(backbone, layout, root, item)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a model error on one file must not stop the job
        return f"{root / item.file}: {type(error).__name__}: {error}"


# ---------------------------------------------------------------- pool processes: one backbone each

_WORKER: dict = {}


def init_process(model: str, kwargs: dict, layout: WindowLayout, root: str) -> None:
    _WORKER.update(backbone=load_backbone(model, **kwargs), layout=layout, root=Path(root))


def run_in_process(item: AudioItem):
    return attempt(_WORKER["backbone"], _WORKER["layout"], _WORKER["root"], item)

