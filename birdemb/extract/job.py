"""Extraction: every window of every file through a backbone, into the feature store.

The parent process plans (which files are not stored yet), owns the only writer, and shows
progress; worker processes each hold one loaded backbone and turn a file into rows. A file
is stored whole or not at all, so a killed job resumes by simply skipping stored files; a
stored file whose audio changed since (its fingerprint differs) is extracted again and its
rows replaced.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from birdemb import __version__, store
from birdemb.backbones import Backbone, load_backbone
from birdemb.errors import UsageError
from birdemb.extract.discovery import discover
from birdemb.extract.engines.local import run_here, run_pool
from birdemb.extract.progress import AudioProgress, Ticker
from birdemb.extract.sink import SpillPlan
from birdemb.extract.worker import backbone_kwargs
from birdemb.runtime.audio import WindowLayout


@dataclass
class ExtractConfig:
    audio: str
    store: str
    model: str
    dataset: str
    metadata: str | None = None
    window_s: float = 5.0
    min_audio_s: float = 1.0
    overlap_s: float = 0.0  # windows start every window_s - overlap_s seconds (BirdNET-Analyzer's overlap)
    frame_grid: str = "cover"  # which backbone frames a window pools: "cover" it, or one at its "centre"
    workers: int = 0  # 0: one per core
    threads: int = 1  # interpreter threads per worker
    batch: int = 16
    weights: str | None = None
    model_options: dict = field(default_factory=dict)  # backbone-specific (bandwidth, ...)
    engine: str = "local"  # "local" process pool, or "ray" (birdemb.extract.engines.ray_engine)
    engine_options: dict = field(default_factory=dict)  # e.g. {"address": "ray://..."}
    flush_files: int = 64  # files per part file
    flush_seconds: float = 30.0
    progress: bool = True
    spill_rows: int = store.SPILL_ROWS  # windows held in memory: a longer file's go to disk (local stores)


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
    changed: int = 0  # stored files whose audio changed, extracted again
    unreadable: list = field(default_factory=list)  # 'path: reason' of what discovery could not read

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        changed = f" ({self.changed} changed since stored, extracted again)" if self.changed else ""
        return (
            f"{self.succeeded} files stored{changed}, {self.failed} failed, {self.already_stored} already stored "
            f"({self.windows} windows, {self.audio_s / 3600:.2f} h of audio in {self.elapsed_s:.1f} s, "
            f"{self.realtime_factor:.0f}x realtime) -> {self.partition}"
        )


def make_layout(backbone: Backbone, config: ExtractConfig) -> WindowLayout:
    try:
        return WindowLayout(
            window_s=config.window_s,
            frame_s=backbone.frame_s or config.window_s,  # frame_s None: the model sees whole windows
            sample_rate=backbone.sample_rate,
            min_audio_s=config.min_audio_s,
            hop_s=config.window_s - config.overlap_s if config.overlap_s else None,
            frame_grid=config.frame_grid,
        )
    except ValueError as error:  # a window, frame or overlap that cannot go together: one line
        raise UsageError(str(error)) from None


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


# ---------------------------------------------------------------- the job


def extract(config: ExtractConfig) -> ExtractSummary:
    started = time.perf_counter()
    root = Path(config.audio)
    unreadable: list = []  # folders and files discovery could not read: reported, never silently skipped
    items = discover(root, config.metadata, problems=unreadable)
    backbone = load_backbone(config.model, **backbone_kwargs(config))
    layout = make_layout(backbone, config)
    directory = store.partition_dir(config.store, backbone.name, config.dataset)
    with store.PartitionLock(directory):
        partition = store.check_or_write_manifest(directory, make_manifest(backbone, layout))
        store.record_audio_root(directory, root)  # where the stored windows' audio is, for clips and the app
        store.remove_stale_temporaries(directory)
        stored = store.stored_index(directory)
        prints = {item.file: store.fingerprint(root / item.file) for item in items}
        todo = [item for item in items if needs_extraction(stored.get(item.file), prints[item.file])]
        summary = ExtractSummary(str(directory), len(items), len(items) - len(todo))
        summary.changed = sum(1 for item in todo if item.file in stored)
        summary.unreadable = [str(problem) for problem in unreadable]
        writer = store.PartWriter(directory, store.schema(backbone.embedding_dim, _n_labels(backbone)), partition,
                                  {file: where.part for file, where in stored.items()}, config.spill_rows)
        audio = AudioProgress()
        results = run_engine(config, backbone, layout, root, todo, audio, spill_plan(config, writer, todo, prints))
        _consume(results, todo, writer, directory, summary, config, started, prints, audio)
    summary.elapsed_s = time.perf_counter() - started
    return summary


def needs_extraction(stored: store.Stored | None, current: dict | None) -> bool:
    """A file not stored yet, or stored from audio that has changed since (a repaired copy).
    Rows stored before fingerprints were kept have none to compare: they stay."""
    if stored is None:
        return True
    return stored.fingerprint is not None and current is not None and stored.fingerprint != current


def _n_labels(backbone: Backbone) -> int | None:
    return None if backbone.labels is None else len(backbone.labels)


def spill_plan(config: ExtractConfig, writer: store.PartWriter, todo, prints: dict) -> SpillPlan | None:
    """Long files spill to parts of their own as their rows are made, when the store is on
    this machine and the local engine runs (on object stores and Ray they stay in memory).
    Only files stored nowhere yet spill: a changed file's rows replace its old ones in memory."""
    directory = store.local_path(writer.directory)
    if config.engine != "local" or directory is None:
        return None
    target = store.SpillTarget(directory, writer.schema, writer.manifest, config.spill_rows)
    return SpillPlan(target, {item.file: prints[item.file] for item in todo if item.file not in writer.stored})


def run_engine(config, backbone, layout, root, todo, audio: AudioProgress | None = None,
               plan: SpillPlan | None = None):
    """(item, FileRows, Spilled or error message) for every file to do, from the chosen engine.
    The local engine also counts in `audio` the audio done within files in flight (Ray does
    not), and spills long files by `plan`."""
    if config.engine == "ray":
        from birdemb.extract.engines.ray_engine import run_ray

        return run_ray(config, layout, root, todo)
    if config.engine != "local":
        raise ValueError(f"unknown engine {config.engine!r}; choose local or ray")
    workers = config.workers or os.cpu_count() or 1
    if workers <= 1 or len(todo) <= 1:
        return run_here(backbone, layout, root, todo, audio, plan)
    return run_pool(config, layout, root, todo, min(workers, len(todo)), audio, plan)


def _consume(results, todo, writer, directory, summary, config, started, prints, audio):
    bar = _progress(len(todo), config.progress)
    ticker = None if bar is None else Ticker(bar, lambda: _postfix(summary, audio, started)).start()
    last_flush = time.monotonic()
    try:
        for item, result in results:
            if isinstance(result, str):
                store.record_failure(directory, item.file, result, prints.get(item.file))
                summary.failed += 1
                summary.failures[item.file] = result
                if bar is not None:
                    bar.write(f"skipped {result}")
            else:
                _store(writer, result, prints.get(item.file))
                summary.succeeded += 1
                summary.windows += result.n_windows
                summary.audio_s += result.duration_s
                audio.finished(result.duration_s)
            if writer.pending_files >= config.flush_files or time.monotonic() - last_flush > config.flush_seconds:
                writer.flush()
                last_flush = time.monotonic()
            if bar is not None:
                bar.update(1)  # the ticker keeps the text
    except BaseException:
        _keep_finished(writer)  # whatever stopped us (Ctrl-C too), keep the files already finished
        raise
    else:
        writer.flush()
    finally:
        if bar is not None:
            ticker.stop()
            bar.close()


def _store(writer, result, fingerprint: dict | None) -> None:
    """A spilled file's part is complete: it only needs its name. Rows in memory wait for the
    next flush, with the fingerprint as seen before decoding (a later change is redone)."""
    if isinstance(result, store.Spilled):
        writer.adopt(result)
    else:
        result.fingerprint = fingerprint
        writer.add(result)


def _keep_finished(writer) -> None:
    """A last flush on the way out; if it fails too (the disk is still full), the first error
    is the one to report, alone."""
    try:
        writer.flush()
    except (store.StoreError, OSError):
        pass


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", dynamic_ncols=True, desc="extract")


def _postfix(summary: ExtractSummary, audio: AudioProgress, started: float) -> str:
    """Audio done, files in flight included, so a long file moves the bar before it ends."""
    seconds = audio.total_seconds
    elapsed = max(time.perf_counter() - started, 1e-9)
    return f"{seconds / 3600:.2f} h audio, {seconds / elapsed:.0f}x realtime, {summary.failed} failed"
