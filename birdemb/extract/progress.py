"""Progress within files, not only between them: a 24 h recording takes minutes, and the bar
must move while it runs.

Workers add the seconds of audio each decoded block completes to a counter of audio done
within files still in flight (a plain number in this process, a shared double for pool
processes); when a file is stored the parent moves its duration from that counter to the
finished total. A small thread refreshes the bar's text every second or so, whether or not a
file finished.
"""
from __future__ import annotations

import threading
from typing import Callable, Protocol

REFRESH_S = 1.0  # the bar's text at least this often, even while no file finishes
LOCK_TIMEOUT_S = 1.0  # a worker killed while holding the shared lock must not freeze the job


class Counter(Protocol):
    seconds: float

    def add(self, seconds: float) -> None: ...


class LocalSeconds:
    """Audio seconds done within files in flight, for files processed in this process (one
    writer thread; the display thread only reads)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        self.seconds += seconds


class SharedSeconds:
    """The same count shared with pool processes: a double in shared memory and a lock from
    `context`, handed to the workers at process creation (the pool's initializer arguments;
    shared ctypes cannot travel later, with a task). Reads take no lock: they only feed the
    display, and a double is read whole."""

    def __init__(self, context) -> None:
        self._value = context.RawValue("d", 0.0)
        self._lock = context.Lock()

    @property
    def seconds(self) -> float:
        return self._value.value

    def add(self, seconds: float) -> None:
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            return  # a worker died holding it: the count is only for display, the job goes on
        try:
            self._value.value += seconds
        finally:
            self._lock.release()


class FileProgress:
    """file_rows's `progress` hook for one file: adds to `counter` what each call adds to the
    seconds done. Called at the end with the file's duration (stored) or 0 (failed), it leaves
    exactly what the parent takes out again with AudioProgress.finished."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.reported = 0.0

    def __call__(self, seconds_done: float) -> None:
        if seconds_done != self.reported:
            self.counter.add(seconds_done - self.reported)
            self.reported = seconds_done


class AudioProgress:
    """Audio seconds done: files finished plus the part done of files in flight. `in_flight`
    stays None for an engine whose workers do not report within files (Ray)."""

    def __init__(self) -> None:
        self.done_s = 0.0
        self.in_flight: Counter | None = None
        self._lock = threading.Lock()  # done and in flight change together, as one read sees them

    def track(self, counter: Counter) -> Counter:
        """Count files in flight in `counter` from now on (a fresh one for each new pool: the
        files in flight in a pool that died start again from zero)."""
        with self._lock:
            self.in_flight = counter
        return counter

    def finished(self, duration_s: float) -> None:
        """A file stored: its whole duration is done, and no longer in flight."""
        with self._lock:
            self.done_s += duration_s
            if self.in_flight is not None:
                self.in_flight.add(-duration_s)

    @property
    def total_seconds(self) -> float:
        with self._lock:
            in_flight = self.in_flight.seconds if self.in_flight is not None else 0.0
            return self.done_s + max(in_flight, 0.0)


class Ticker:
    """Sets `bar`'s text to `describe()` every `interval_s` from a daemon thread, from start()
    until stop(), which also writes the final text (call it in a finally: Ctrl-C too)."""

    def __init__(self, bar, describe: Callable[[], str], interval_s: float = REFRESH_S) -> None:
        self.bar = bar
        self.describe = describe
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="birdemb-progress", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.bar.set_postfix_str(self.describe())  # refreshes the bar now

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self.bar.set_postfix_str(self.describe(), refresh=False)  # shown when the bar closes
