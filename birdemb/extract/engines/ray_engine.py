"""The Ray engine: extraction spread over the workers of a Ray cluster.

One actor per worker loads the backbone once and turns many files into rows with the same
`attempt` as the local pool. The driver (the `birdemb extract` process) keeps planning,
the only writer, the progress bar and the failure log, so resumption works unchanged: this
module only yields (item, FileRows or error message) as files finish, like the local pool.

Workers read audio at `root`, so the audio must be at that same path on every node (shared
storage). A worker that dies loses only the file it was working on: that file is reported
as failed (it has no rows, so the next run redoes it), the files queued behind it go back
in the queue, and a fresh actor takes the dead one's place.
"""
from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

import ray
from ray.exceptions import RayActorError

from birdemb import store
from birdemb.backbones import BackboneError, load_backbone
from birdemb.extract.worker import attempt, backbone_kwargs

CHECKED = ("model", "version", "weights_sha256", "options")  # what must match the partition's manifest

IN_FLIGHT_PER_WORKER = 2  # one file running and one waiting, so a worker never idles on a round trip


class ExtractWorker:
    """Holds one loaded backbone for its whole life and processes file after file."""

    def __init__(self, model: str, kwargs: dict, layout, root: str):
        self.backbone = load_backbone(model, **kwargs)
        self.layout = layout
        self.root = Path(root)

    def run(self, item):
        return attempt(self.backbone, self.layout, self.root, item)

    def describe(self) -> dict:
        return self.backbone.describe()


_REMOTE_WORKER = ray.remote(ExtractWorker)


def run_ray(config, layout, root, todo):
    """Yield (item, FileRows or error message) for every file in `todo`, as workers finish."""
    if not todo:
        return
    started_here = connect(config)
    try:
        yield from _schedule(config, layout, os.path.abspath(root), todo)
    finally:
        if started_here:
            ray.shutdown()  # a Ray we started for this job ends with it


def connect(config) -> bool:
    """Join the cluster at the configured address (or RAY_ADDRESS), or start Ray here with one
    CPU per worker; True when this call started Ray."""
    if ray.is_initialized():
        return False
    address = config.engine_options.get("address") or os.environ.get("RAY_ADDRESS") or None
    options = {"address": address, "ignore_reinit_error": True, "include_dashboard": False}
    if address is None:  # Ray refuses resource sizes when joining an existing cluster
        options["num_cpus"] = (config.workers or os.cpu_count() or 1) * max(config.threads, 1)
    if config.engine_options.get("runtime_env"):  # e.g. {"working_dir": ".", "pip": [...]} on a bare cluster
        options["runtime_env"] = config.engine_options["runtime_env"]
    ray.init(**options)
    return True


def worker_count(config, files: int) -> int:
    cpus_per_worker = max(config.threads, 1)
    cluster = int(ray.cluster_resources().get("CPU", 1)) // cpus_per_worker
    return max(1, min(config.workers or cluster, files))


def _start_workers(config, layout, root, count: int) -> list:
    """Start workers and wait until each has loaded a model identical to the one the
    partition's manifest records: a node with other weights at the same path must not
    mix its rows in."""
    # no automatic restarts: the schedule replaces a dead worker and knows which file it lost
    actor = _REMOTE_WORKER.options(num_cpus=max(config.threads, 1), max_restarts=0)
    workers = [actor.remote(config.model, backbone_kwargs(config), layout, root) for _ in range(count)]
    expected = store.read_manifest(store.partition_dir(config.store, config.model, config.dataset))["parameters"]
    try:
        described = ray.get([worker.describe.remote() for worker in workers])
    except RayActorError as error:
        raise BackboneError(f"a Ray worker could not load {config.model}: {error}") from None
    for description in described:
        # through JSON, as the manifest was written (tuples become lists)
        differences = [key for key in CHECKED if json.loads(json.dumps(description[key])) != expected[key]]
        if differences:
            raise BackboneError(
                f"a Ray worker loaded {config.model} with other {', '.join(differences)} than this job "
                "(are the weights at the same path on every node?)"
            )
    return workers


def _submit(worker, item):
    return worker.run.remote(item)


def _schedule(config, layout, root, todo):
    queue = deque(todo)
    workers = _start_workers(config, layout, root, worker_count(config, len(todo)))
    running: dict = {}  # ref -> (worker index, item)
    per_worker = [deque() for _ in workers]  # each worker's refs, oldest first (actors run in order)
    deaths_without_progress = 0

    def feed(index):
        while queue and len(per_worker[index]) < IN_FLIGHT_PER_WORKER:
            item = queue.popleft()
            ref = _submit(workers[index], item)
            running[ref] = (index, item)
            per_worker[index].append(ref)

    for index in range(len(workers)):
        feed(index)
    while running:
        [ref], _ = ray.wait(list(running), num_returns=1)
        index, item = running[ref]
        try:
            result = ray.get(ref)
        except RayActorError as error:
            finished, lost = _collect_dead_worker(per_worker[index], running)
            yield from finished
            deaths_without_progress = 0 if finished else deaths_without_progress + 1
            if deaths_without_progress > len(workers) + 2:
                raise RuntimeError(f"Ray workers keep dying before finishing a file: {error}") from error
            in_flight, waiting = lost[0], lost[1:]
            queue.extendleft(reversed(waiting))  # never started: back to the front of the queue
            [workers[index]] = _start_workers(config, layout, root, 1)
            feed(index)
            yield in_flight, (
                f"{Path(root) / in_flight.file}: the worker died while processing this file "
                f"({type(error).__name__}); it has no rows, so the next run retries it"
            )
            continue
        del running[ref]
        per_worker[index].remove(ref)
        deaths_without_progress = 0
        feed(index)
        yield item, result


def _collect_dead_worker(refs: deque, running: dict):
    """Split a dead worker's outstanding files into those it finished before dying
    (yielded as usual) and those lost, oldest first: the first lost one was in flight."""
    finished, lost = [], []
    while refs:
        ref = refs.popleft()
        _, item = running.pop(ref)
        try:
            finished.append((item, ray.get(ref)))
        except RayActorError:
            lost.append(item)
    return finished, lost
