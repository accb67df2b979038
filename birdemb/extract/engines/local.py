"""The local engine: files through backbones in this process, or in a pool of processes
that survives a worker dying."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from birdemb.errors import BirdembError
from birdemb.extract.discovery import AudioItem
from birdemb.extract.progress import AudioProgress, LocalSeconds, SharedSeconds
from birdemb.extract.sink import SpillPlan
from birdemb.extract.worker import attempt, backbone_kwargs, init_process, run_in_process
from birdemb.runtime.lifecycle import terminate_workers
from birdemb.store import StoreError


def run_here(backbone, layout, root, todo, progress: AudioProgress | None = None, plan: SpillPlan | None = None):
    """Files one after the other in this process; with `progress`, its count of audio done
    within the file in flight grows block by block; with `plan`, long new files spill."""
    in_flight = None if progress is None else progress.track(LocalSeconds())
    for item in todo:
        yield item, attempt(backbone, layout, root, item, in_flight, None if plan is None else plan.spill(item))


CRASH = "worker process died while processing this file (a decoder or model crash)"


class WorkerStartError(BirdembError):
    """Worker processes die before they can take a file: no file is to blame."""


def run_pool(config, layout, root, todo, workers, progress: AudioProgress | None = None,
             plan: SpillPlan | None = None):
    """Yield (item, result) as workers finish, keeping a few files queued per worker.

    A worker that dies (a segfault in a decoder, say) breaks the whole pool and every file
    in flight with it. The pool is then rebuilt and those files are retried one at a time,
    so only the file that really kills a worker is recorded as failed. Workers that die before
    any of them has loaded the model (a worker cannot import or load it) blame no file: the
    job stops with WorkerStartError instead of recording every file as a crash.

    Workers die with this process (see birdemb.runtime.lifecycle) and are ended at once when
    the job stops early (Ctrl-C, SIGTERM, an error, the generator closed).

    With `progress`, workers add the audio done within their files to a counter shared with
    this process, a fresh one for each pool. With `plan`, workers spill long new files (its
    target reaches them at creation, each file's fingerprint with the file). A store write that
    fails in a worker (a full disk) ends the job, as the parent's own writes do.
    """
    prints = {} if plan is None else plan.prints
    context = multiprocessing.get_context("spawn")  # interpreters and torch do not survive fork
    queue = list(reversed(todo))  # pop() from the end keeps the sorted order
    suspects: list[AudioItem] = []  # in flight when a worker died: run alone
    while queue or suspects:
        in_flight = None if progress is None else progress.track(SharedSeconds(context))
        started = context.Value("i", 0)
        args = (config.model, backbone_kwargs(config), layout, str(root), in_flight,
                None if plan is None else plan.target, started)
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_process, initargs=args)
        running: dict = {}
        try:
            while queue or suspects or running:
                try:
                    if suspects and not running:
                        item = suspects[-1]
                        running[pool.submit(run_in_process, item, prints.get(item.file))] = (item, True)
                        suspects.pop()
                    while not suspects and queue and len(running) < 3 * workers:
                        item = queue[-1]
                        running[pool.submit(run_in_process, item, prints.get(item.file))] = (item, False)
                        queue.pop()
                    broken = False
                except BrokenProcessPool:  # it broke while files were handed out: that file stays queued
                    broken = True
                if not broken:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        item, alone = running.pop(future)
                        error = future.exception()
                        broken = broken or isinstance(error, BrokenProcessPool)
                        if error is None:
                            yield item, future.result()
                        elif isinstance(error, StoreError):
                            raise error
                        elif not isinstance(error, BrokenProcessPool):
                            yield item, f"{root / item.file}: {type(error).__name__}: {error}"
                        elif alone:
                            yield item, f"{root / item.file}: {CRASH}"
                        else:
                            suspects.append(item)
                if broken:
                    if started.value == 0:
                        raise WorkerStartError(
                            f"extraction workers exit before they load the {config.model} model (see the messages "
                            "above: a worker could not start Python, import birdemb or load the model); no file "
                            "was recorded as failed, so rerun the same command once that is fixed, or use --workers 1")
                    for future, (item, _) in running.items():  # finished before the break: kept; else retried alone
                        if future.done() and future.exception() is None:
                            yield item, future.result()
                        else:
                            suspects.append(item)
                    break
        except BaseException:
            terminate_workers(pool)  # a busy worker would otherwise finish its file first
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
