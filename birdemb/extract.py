"""Extraction: every window of every file through a backbone, into the feature store.

The parent process plans (which files are not stored yet), owns the only writer, and shows
progress; worker processes each hold one loaded backbone and turn a file into rows. A file
is stored whole or not at all, so a killed job resumes by simply skipping stored files.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

from birdemb import __version__, store
from birdemb.audio import AudioError, WindowLayout, frame_audio, load_audio, pool_windows
from birdemb.backbones import Backbone, load_backbone
from birdemb.corpus import AudioItem, discover


@dataclass
class ExtractConfig:
    audio: str
    store: str
    model: str
    dataset: str
    metadata: str | None = None
    window_s: float = 5.0
    min_audio_s: float = 1.0
    workers: int = 0  # 0: one per core
    threads: int = 1  # interpreter threads per worker
    batch: int = 16
    weights: str | None = None
    model_options: dict = field(default_factory=dict)  # backbone-specific (bandwidth, ...)
    engine: str = "local"  # "local" process pool, or "ray" (birdemb.engines.ray_engine)
    engine_options: dict = field(default_factory=dict)  # e.g. {"address": "ray://..."}
    flush_files: int = 64  # files per part file
    flush_seconds: float = 30.0
    progress: bool = True


@dataclass
class ExtractSummary:
    partition: str
    files_total: int
    already_stored: int
    succeeded: int = 0
    failed: int = 0
    windows: int = 0
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    failures: dict = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        return (
            f"{self.succeeded} files stored, {self.failed} failed, {self.already_stored} already stored "
            f"({self.windows} windows, {self.audio_s / 3600:.2f} h of audio in {self.elapsed_s:.1f} s, "
            f"{self.realtime_factor:.0f}x realtime) -> {self.partition}"
        )


def backbone_kwargs(config: ExtractConfig) -> dict:
    return {"weights": config.weights, "threads": config.threads, "batch": config.batch, **config.model_options}


def make_layout(backbone: Backbone, config: ExtractConfig) -> WindowLayout:
    return WindowLayout(
        window_s=config.window_s,
        frame_s=backbone.frame_s or config.window_s,  # frame_s None: the model sees whole windows
        sample_rate=backbone.sample_rate,
        min_audio_s=config.min_audio_s,
    )


def make_manifest(backbone: Backbone, layout: WindowLayout) -> dict:
    description = backbone.describe()
    return {
        **description,
        "labels": backbone.labels,
        "layout": layout.describe(),
        "code_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # what must match for rows to be added to an existing partition
        "parameters": {
            "model": description["model"],
            "version": description["version"],
            "weights_sha256": description["weights_sha256"],
            "options": description["options"],
            "layout": layout.describe(),
        },
    }


def file_rows(backbone: Backbone, layout: WindowLayout, root: Path, item: AudioItem) -> store.FileRows:
    """Decode one file, run its frames through the backbone, pool them into windows."""
    audio = load_audio(root / item.file, layout.sample_rate)
    framed = frame_audio(audio, layout)
    embeddings, logits = backbone.embed(framed.frames)
    embedding, pooled = pool_windows(framed, embeddings, logits)
    start_s, end_s = framed.window_times(layout)
    return store.FileRows(
        file=item.file,
        species=item.species,
        secondary_labels=list(item.secondary_labels),
        duration_s=len(audio) / layout.sample_rate,
        start_s=start_s,
        end_s=end_s,
        embedding=embedding,
        logits=pooled,
    )


# ---------------------------------------------------------------- worker processes

_WORKER: dict = {}


def _worker_init(model: str, kwargs: dict, layout: WindowLayout, root: str) -> None:
    _WORKER.update(backbone=load_backbone(model, **kwargs), layout=layout, root=Path(root))


def _worker_run(item: AudioItem):
    return _attempt(_WORKER["backbone"], _WORKER["layout"], _WORKER["root"], item)


def _attempt(backbone, layout, root, item):
    """FileRows, or the error message that names the file and the problem."""
    try:
        return file_rows(backbone, layout, root, item)
    except AudioError as error:
        return str(error)
    except Exception as error:  # a model error on one file must not stop the job
        return f"{root / item.file}: {type(error).__name__}: {error}"


# ---------------------------------------------------------------- the job


def extract(config: ExtractConfig) -> ExtractSummary:
    started = time.perf_counter()
    root = Path(config.audio)
    items = discover(root, config.metadata)
    backbone = load_backbone(config.model, **backbone_kwargs(config))
    layout = make_layout(backbone, config)
    directory = store.partition_dir(config.store, backbone.name, config.dataset)
    with store.PartitionLock(directory):
        store.check_or_write_manifest(directory, make_manifest(backbone, layout))
        store.remove_stale_temporaries(directory)
        done = store.stored_files(directory)
        todo = [item for item in items if item.file not in done]
        summary = ExtractSummary(str(directory), len(items), len(items) - len(todo))
        writer = store.PartWriter(directory, store.schema(backbone.embedding_dim, _n_labels(backbone)))
        results = run_engine(config, backbone, layout, root, todo)
        _consume(results, todo, writer, directory, summary, config, started)
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _n_labels(backbone: Backbone) -> int | None:
    return None if backbone.labels is None else len(backbone.labels)


def run_engine(config, backbone, layout, root, todo):
    """(item, FileRows or error message) for every file to do, from the chosen engine."""
    if config.engine == "ray":
        from birdemb.engines.ray_engine import run_ray

        return run_ray(config, layout, root, todo)
    if config.engine != "local":
        raise ValueError(f"unknown engine {config.engine!r}; choose local or ray")
    workers = config.workers or os.cpu_count() or 1
    if workers <= 1 or len(todo) <= 1:
        return _run_here(backbone, layout, root, todo)
    return _run_pool(config, layout, root, todo, min(workers, len(todo)))


def _run_here(backbone, layout, root, todo):
    for item in todo:
        yield item, _attempt(backbone, layout, root, item)


CRASH = "worker process died while processing this file (a decoder or model crash)"


def _run_pool(config, layout, root, todo, workers):
    """Yield (item, result) as workers finish, keeping a few files queued per worker.

    A worker that dies (a segfault in a decoder, say) breaks the whole pool and every file
    in flight with it. The pool is then rebuilt and those files are retried one at a time,
    so only the file that really kills a worker is recorded as failed.
    """
    context = multiprocessing.get_context("spawn")  # interpreters and torch do not survive fork
    args = (config.model, backbone_kwargs(config), layout, str(root))
    queue = list(reversed(todo))  # pop() from the end keeps the sorted order
    suspects: list[AudioItem] = []  # in flight when a worker died: run alone
    while queue or suspects:
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=args)
        running: dict = {}
        try:
            while queue or suspects or running:
                if suspects and not running:
                    item = suspects.pop()
                    running[pool.submit(_worker_run, item)] = (item, True)
                while not suspects and queue and len(running) < 3 * workers:
                    item = queue.pop()
                    running[pool.submit(_worker_run, item)] = (item, False)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    item, alone = running.pop(future)
                    error = future.exception()
                    if error is None:
                        yield item, future.result()
                    elif not isinstance(error, BrokenProcessPool):
                        yield item, f"{root / item.file}: {type(error).__name__}: {error}"
                    elif alone:
                        yield item, f"{root / item.file}: {CRASH}"
                    else:
                        suspects.append(item)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in finished if f.done()):
                    suspects.extend(item for item, _ in running.values())
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _consume(results, todo, writer, directory, summary, config, started):
    bar = _progress(len(todo), config.progress)
    last_flush = time.monotonic()
    try:
        for item, result in results:
            if isinstance(result, str):
                store.record_failure(directory, item.file, result)
                summary.failed += 1
                summary.failures[item.file] = result
                if bar is not None:
                    bar.write(f"skipped {result}")
            else:
                writer.add(result)
                summary.succeeded += 1
                summary.windows += result.n_windows
                summary.audio_s += result.duration_s
            if writer.pending_files >= config.flush_files or time.monotonic() - last_flush > config.flush_seconds:
                writer.flush()
                last_flush = time.monotonic()
            if bar is not None:
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix_str(
                    f"{summary.windows / elapsed:.0f} win/s, {summary.audio_s / elapsed:.0f}x realtime, "
                    f"{summary.failed} failed",
                    refresh=False,
                )
                bar.update(1)
    finally:
        writer.flush()  # whatever stopped us (Ctrl-C too), keep the files already finished
        if bar is not None:
            bar.close()


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", dynamic_ncols=True, desc="extract")


def summary_dict(summary: ExtractSummary) -> dict:
    return {**asdict(summary), "realtime_factor": summary.realtime_factor}
