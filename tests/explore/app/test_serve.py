"""`birdemb app` never leaves its server behind: stopping the command by SIGTERM (a supervisor,
`kill`, a test's teardown) or even SIGKILL ends the Streamlit server it started."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]

# a stand-in server (Streamlit's start-up is slow and not what is tested): it writes its pid, then waits
LAUNCHER = """
import os, sys
from birdemb.commands.app import serve
server = [sys.executable, "-c", "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(300)"]
sys.exit(serve(server, dict(os.environ)))
"""


def server_pid(pid_file: Path) -> int:
    for _ in range(200):
        if pid_file.is_file() and pid_file.read_text():
            return int(pid_file.read_text())
        time.sleep(0.05)
    raise AssertionError("the stand-in server did not start")


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_birdemb_app_stops_its_server(tmp_path, stop):
    pid_file = tmp_path / "server.pid"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER % str(pid_file)], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True)
    server = server_pid(pid_file)
    try:
        assert not gone(server, timeout=0.5)
        launcher.send_signal(stop)
        status = launcher.wait(20)
        assert gone(server), "the server outlived `birdemb app`"
        if stop == signal.SIGTERM:
            assert status == 128 + signal.SIGTERM and "stopped by SIGTERM" in launcher.stderr.read()
    finally:
        if not gone(server, timeout=0):
            psutil.Process(server).kill()
