"""One writer per partition: an OS file lock locally, a renewed lease on object stores."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid

from birdemb.store.files import atomic_write_text, make_dirs, read_text
from birdemb.store.layout import LOCK, StoreError
from birdemb.store.location import Folder, Location, as_folder, local_path, on_filesystem


class PartitionLock:
    """An exclusive lock on a partition for the life of one extraction: an OS file lock on
    this machine's filesystem, a best-effort lease (`LeaseLock`) on remote ones."""

    def __init__(self, directory: Folder):
        make_dirs(directory)
        here = local_path(as_folder(directory))
        self._lease = None if here is not None else LeaseLock(as_folder(directory))
        if self._lease is not None:
            return
        self._handle = open(here / LOCK, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise StoreError(f"{directory} is being written by another job (lock held)") from None

    def release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class LeaseLock:
    """A lock for filesystems without OS locks (object stores): `_lock` names its holder and
    is renewed every RENEW_S while the job runs; a lease younger than EXPIRE_S is respected,
    an older one was left by a killed job and is taken over. Best effort only: two jobs that
    start within the same second can both win, so run one job per partition."""

    RENEW_S = 20.0
    EXPIRE_S = 90.0

    def __init__(self, directory: Location):
        self.path = directory / LOCK
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        held = self._holder()
        if held is not None and time.time() - held["renewed"] < self.EXPIRE_S and held["token"] != self.token:
            raise StoreError(
                f"{directory} is being written by another job (lease held by {held['token']}, renewed "
                f"{time.time() - held['renewed']:.0f} s ago; it expires {self.EXPIRE_S:.0f} s after the last renewal)"
            )
        self._renew()
        time.sleep(0.2)  # let a job that raced us finish its write, then see who won
        if (self._holder() or {}).get("token") != self.token:
            raise StoreError(f"{directory} is being written by another job (lost the race for {LOCK})")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_renewing, daemon=True, name="birdemb-lease")
        self._thread.start()

    def _holder(self) -> dict | None:
        text = read_text(self.path)
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None  # a torn lease from a killed writer holds nothing

    def _renew(self) -> None:
        atomic_write_text(self.path, json.dumps({"token": self.token, "renewed": time.time()}))

    def _keep_renewing(self) -> None:
        while not self._stop.wait(self.RENEW_S):
            self._renew()

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if (self._holder() or {}).get("token") == self.token:
            filesystem, target = on_filesystem(self.path)
            filesystem.delete_file(target)
