"""Worker processes that never outlive their job, and SIGTERM handled like Ctrl-C.

A pool worker calls `die_with_parent()` first thing in its initializer. When the job's
process dies by any signal, SIGKILL included (Slurm, `timeout`, Kubernetes, the OOM killer),
its workers exit too instead of running on with their memory:

- on Linux the kernel kills the worker (prctl PR_SET_PDEATHSIG). The kernel sends that signal
  when the *thread* that spawned the worker exits. CPython's ProcessPoolExecutor spawns
  workers in submit(), in the thread that submits, and birdemb's pools are fed and drained
  by the thread that runs the job, so that thread ends only after the job is over;
- everywhere, a daemon thread watches the parent (its multiprocessing sentinel, a pipe that
  closes when the parent dies, and os.getppid()) and exits the worker within about a second.

The command layer wraps a job in `interruptible()`: SIGTERM then raises `Terminated`, a
KeyboardInterrupt, so the job's finally-blocks keep the files already finished, exactly as
after Ctrl-C. Only the standard library is imported here: the Kaggle script inlines runtime.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_INTERVAL_S = 1.0
EXIT_ORPHANED = 1  # nobody reads it: the parent is gone


def die_with_parent(pdeathsig: bool = True) -> None:
    """In a multiprocessing child: exit when the parent process dies. No-op elsewhere.
    `pdeathsig` False leaves only the watch thread (for pools fed from a short-lived thread)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if pdeathsig:
        kill_me_with_parent_thread()
    spawner = os.getppid()
    if spawner == 1 or not parent.is_alive():
        os._exit(EXIT_ORPHANED)  # the parent died before we could watch it
    threading.Thread(target=_watch, args=(parent, spawner), name="birdemb-watch-parent", daemon=True).start()


def kill_me_with_parent_thread() -> None:
    """Linux: have the kernel SIGKILL this process when the thread that started it exits (a
    pool worker's parent; as a subprocess.Popen `preexec_fn`, a server's launcher)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no libc prctl (a static or exotic build): the watch thread still works


def _watch(parent, spawner: int) -> None:
    from multiprocessing.connection import wait

    while True:
        # the sentinel becomes readable when the parent's end of the pipe closes: it died
        if wait([parent.sentinel], timeout=WATCH_INTERVAL_S) or os.getppid() != spawner:
            os._exit(EXIT_ORPHANED)


def terminate_workers(pool) -> None:
    """End a ProcessPoolExecutor's workers now. shutdown(cancel_futures=True) only drops
    queued work: a worker busy with a file would run on until that file is done."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


# ---------------------------------------------------------------- SIGTERM in the parent


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises KeyboardInterrupt."""


@contextlib.contextmanager
def interruptible():
    """Within the block SIGTERM raises `Terminated` and Ctrl-C (SIGINT) KeyboardInterrupt in
    the main thread at once, even while it waits for workers, and both first end the process's
    multiprocessing children, as a terminal's Ctrl-C does by reaching the whole process group.
    A second SIGTERM is ignored, so the flush in a finally-block completes."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous_term = signal.signal(signal.SIGTERM, _on_signal)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:  # not when started with Ctrl-C ignored (nohup, &)
        # Python's own handler again: polars replaces it with one that restarts a blocked wait
        # (pola-rs/polars#21739), so Ctrl-C waited for a busy worker to finish its file
        signal.signal(signal.SIGINT, _on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _on_signal(signum, frame):
    if signum == signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for child in multiprocessing.active_children():
        child.terminate()
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def interruption(error: KeyboardInterrupt) -> tuple[str, int]:
    """(what interrupted the job, the exit status): shells report death by signal N as 128 + N."""
    if isinstance(error, Terminated):
        return "SIGTERM", 128 + signal.SIGTERM
    return "Ctrl-C", 128 + signal.SIGINT
