"""Interrupted jobs, with real processes and real signals: pool workers never outlive their
job (kill -9 of the parent included); SIGTERM and Ctrl-C keep the finished files, end busy
workers at once, exit 143 / 130 with one line, and a rerun equals an uninterrupted run.

The corpus ends with two files on which the test backbone hangs for a minute, so when the
other files are stored both workers are busy, and anything that waits for them shows."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil  # a test dependency (pyproject's dev extra)
import pytest
import soundfile as sf

from birdemb import store
from birdemb.cli import main
from tests.helpers.audio import write_audio
from tests.helpers.hanging_backbone import HANG_LEVEL, HANG_VARIABLE
from tests.helpers.paths import REPOSITORY

MODEL = "tests.helpers.hanging_backbone:HangingToyBackbone"
N_QUICK, N_HANGING = 6, 2
HANG_S = 60  # far longer than any wait below: a worker left to finish its file fails the test


def corpus(tmp_path):
    audio = tmp_path / "audio"
    for i in range(N_QUICK):
        write_audio(audio / f"sp{i % 3}" / f"f{i:02d}.wav", 6.0 + i % 3, 16000, seed=i, freq=1000 + 250 * i)
    (audio / "zz").mkdir()
    for i in range(N_HANGING):  # sorted last: submitted after the quick files
        sf.write(audio / "zz" / f"hang{i}.wav", np.full(16000 * 6, HANG_LEVEL, dtype=np.float32), 16000,
                 subtype="FLOAT")
    return audio


def extract_args(audio, root, workers: int = 2) -> list[str]:
    return ["extract", "--model", MODEL, "--audio", str(audio), "--store", str(root), "--dataset", "train",
            "--workers", str(workers), "--files-per-part", "1", "--quiet"]


def start_job(audio, root, tmp_path) -> subprocess.Popen:
    """The job in the background; output to files (a pipe would be held open by orphans).
    Ctrl-C is restored: a shell starts background jobs with SIGINT ignored, and Python keeps
    an ignored SIGINT ignored."""
    return subprocess.Popen([sys.executable, "-m", "birdemb", *extract_args(audio, root)], cwd=REPOSITORY,
                            env={**os.environ, HANG_VARIABLE: str(HANG_S)}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=open(tmp_path / "stdout", "w"), stderr=open(tmp_path / "stderr", "w"))


def busy_descendants(job: subprocess.Popen, directory) -> list:
    """Once the quick files are stored (both workers are then on a hanging file): every
    process under the job, the two pool workers among them."""
    deadline = time.time() + 90
    while len(store.part_files(directory)) < N_QUICK:
        assert job.poll() is None, "the job ended before it could be interrupted"
        assert time.time() < deadline, "the job did not store its quick files in 90 s"
        time.sleep(0.05)
    time.sleep(0.3)  # let both workers reach the hanging files
    processes = psutil.Process(job.pid).children(recursive=True)
    assert len([p for p in processes if "spawn_main" in " ".join(p.cmdline())]) == 2
    return processes


def still_running(processes, within_s: float) -> list:
    deadline = time.time() + within_s
    while True:
        alive = [p for p in processes if _alive(p)]
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.05)


def _alive(process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_all(job, processes) -> None:
    """Never leave a process behind, whatever the test found."""
    for process in processes:
        if _alive(process):
            process.kill()
    if job.poll() is None:
        job.kill()
    job.wait()


def stored_rows(root):
    return store.scan(root, "hangtoy", "train").sort("file", "window").collect()


def test_kill_minus_9_of_the_parent_takes_its_busy_workers_with_it(tmp_path):
    audio, root = corpus(tmp_path), tmp_path / "store"
    job = start_job(audio, root, tmp_path)
    processes = []
    try:
        processes = busy_descendants(job, store.partition_dir(root, "hangtoy", "train"))
        os.kill(job.pid, signal.SIGKILL)  # the parent alone: nothing tells the workers
        assert job.wait(10) == -signal.SIGKILL
        assert still_running(processes, within_s=3.0) == []
    finally:
        kill_all(job, processes)


@pytest.mark.parametrize("signum, status, words", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_an_interrupted_job_keeps_its_files_ends_its_workers_and_says_so(tmp_path, signum, status, words):
    audio, root = corpus(tmp_path), tmp_path / "store"
    directory = store.partition_dir(root, "hangtoy", "train")
    job = start_job(audio, root, tmp_path)
    processes = []
    try:
        processes = busy_descendants(job, directory)
        os.kill(job.pid, signum)  # the parent alone, as `timeout`, Slurm or Kubernetes do
        assert job.wait(15) == status  # waiting for the busy workers would take a minute
        assert still_running(processes, within_s=3.0) == []
    finally:
        kill_all(job, processes)
    assert len(store.stored_files(directory)) == N_QUICK
    last_line = (tmp_path / "stderr").read_text().strip().splitlines()[-1]
    assert last_line == f"birdemb extract: interrupted by {words}: {N_QUICK} files stored, rerun the same command to resume"

    if signum == signal.SIGTERM:  # the rerun finishes the job: the same rows as one uninterrupted run
        assert HANG_VARIABLE not in os.environ  # in this process the backbone does not hang
        assert main(extract_args(audio, root, workers=1)) == 0
        reference = tmp_path / "reference"
        assert main(extract_args(audio, reference, workers=1)) == 0
        a, b = stored_rows(reference), stored_rows(root)
        assert len(set(b["file"])) == N_QUICK + N_HANGING and b.select("file", "window").is_unique().all()
        assert a.select("file", "window", "start_s").equals(b.select("file", "window", "start_s"))
        np.testing.assert_allclose(np.stack(b["embedding"].to_numpy()), np.stack(a["embedding"].to_numpy()), atol=1e-6)
        np.testing.assert_allclose(np.stack(b["logits"].to_numpy()), np.stack(a["logits"].to_numpy()), atol=1e-6)


WATCH_ONLY = textwrap.dedent("""
    import functools, multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from birdemb.runtime.lifecycle import die_with_parent

    if __name__ == "__main__":
        init = functools.partial(die_with_parent, pdeathsig=False)  # the watch thread alone
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=init)
        pool.submit(os.getpid).result()
        pool.submit(time.sleep, 60)  # busy for a minute unless it notices its parent is gone
        print(list(pool._processes)[0], flush=True)
        time.sleep(60)
""")


def test_without_the_kernels_help_the_watch_thread_ends_an_orphaned_worker(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(WATCH_ONLY)
    job = subprocess.Popen([sys.executable, str(script)], cwd=REPOSITORY, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    worker = None
    try:
        worker = psutil.Process(int(job.stdout.readline()))
        assert _alive(worker)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(10)
        assert still_running([worker], within_s=3.0) == []  # it looks every second
    finally:
        kill_all(job, [worker] if worker else [])
