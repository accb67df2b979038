"""Progress within long files: the audio done inside files still in flight counts, in this
process and from pool workers, and the bar's text is refreshed while no file finishes."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from birdemb.extract.discovery import AudioItem
from birdemb.extract.engines.local import run_here, run_pool
from birdemb.extract.job import ExtractConfig, ExtractSummary, _consume
from birdemb.extract.progress import AudioProgress, FileProgress, LocalSeconds, Ticker
from birdemb.extract.worker import attempt
from birdemb.runtime.audio import WindowLayout
from tests.helpers.audio import write_steady_tone
from tests.helpers.hanging_backbone import HANG_LEVEL, HANG_VARIABLE

TOY = "tests.helpers.toy_backbone:ToyBackbone"
HANGING = "tests.helpers.hanging_backbone:HangingToyBackbone"
RATE = 16000
LONG_S = 300.0  # 60 windows: the stream hands them to the backbone in several groups


def layout() -> WindowLayout:
    return WindowLayout(window_s=5.0, frame_s=5.0, sample_rate=RATE, min_audio_s=1.0)


class RecordingSeconds(LocalSeconds):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def add(self, seconds: float) -> None:
        super().add(seconds)
        self.seen.append(self.seconds)


class RecordedProgress(AudioProgress):
    """Counts files in flight in a LocalSeconds that keeps every value it takes."""

    def track(self, counter):
        return super().track(RecordingSeconds())


# ---------------------------------------------------------------- the accounting


def test_files_in_flight_count_once_and_move_to_done_when_stored():
    progress = AudioProgress()
    counter = progress.track(LocalSeconds())
    long, short, broken = FileProgress(counter), FileProgress(counter), FileProgress(counter)
    long(80.0), long(160.0), short(30.0), broken(40.0)
    assert progress.total_seconds == 80 + 80 + 30 + 40
    broken(0.0)  # attempt's end for a file that failed: its seconds leave the count
    short(45.0)  # attempt's end for a stored file: its exact duration stays
    assert progress.total_seconds == 160 + 45
    progress.finished(45.0)
    assert (progress.done_s, counter.seconds, progress.total_seconds) == (45.0, 160.0, 205.0)
    long(200.0)
    progress.finished(200.0)
    assert (progress.done_s, counter.seconds, progress.total_seconds) == (245.0, 0.0, 245.0)


def test_an_engine_that_does_not_report_within_files_counts_finished_files_only():
    progress = AudioProgress()  # Ray: nothing tracked
    progress.finished(12.5)
    progress.finished(7.5)
    assert progress.total_seconds == progress.done_s == 20.0


def test_ticker_refreshes_the_text_until_stopped_then_writes_the_last():
    calls = []
    bar = SimpleNamespace(set_postfix_str=lambda text, refresh=True: calls.append((text, refresh)))
    values = iter(range(1000))
    ticker = Ticker(bar, lambda: f"{next(values)} s", interval_s=0.01).start()
    time.sleep(0.2)
    ticker.stop()
    stopped_at = len(calls)
    assert not ticker._thread.is_alive()
    assert len(calls) >= 3 and all(refresh for _, refresh in calls[:-1])  # refreshed with no file finished
    assert calls[-1][1] is False and [text for text, _ in calls] == [f"{k} s" for k in range(len(calls))]
    time.sleep(0.05)
    assert len(calls) == stopped_at  # nothing after stop


# ---------------------------------------------------------------- real files


def test_a_long_file_in_this_process_reports_each_group_of_blocks_before_it_ends(tmp_path):
    from tests.helpers.toy_backbone import ToyBackbone

    write_steady_tone(tmp_path / "long.wav", LONG_S, RATE, 1000)
    progress = RecordedProgress()
    results = run_here(ToyBackbone(), layout(), tmp_path, [AudioItem("long.wav", None)], progress)
    item, rows = next(results)
    seen = progress.in_flight.seen
    # several steps up to the file's duration, all seen before its rows reached the job
    assert rows.duration_s == LONG_S and seen[-1] == LONG_S
    assert seen == sorted(set(seen)) and len([s for s in seen if s < LONG_S]) >= 3, seen
    assert progress.total_seconds == LONG_S
    progress.finished(rows.duration_s)
    assert (progress.done_s, progress.in_flight.seconds, progress.total_seconds) == (LONG_S, 0.0, LONG_S)


def test_attempt_leaves_nothing_in_flight_for_a_file_that_fails(tmp_path):
    from tests.helpers.toy_backbone import ToyBackbone

    write_steady_tone(tmp_path / "cut.wav", 200.0, RATE, 1000)
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) * 2 // 3])  # the header still claims 200 s
    counter = RecordingSeconds()
    result = attempt(ToyBackbone(), layout(), tmp_path, AudioItem("cut.wav", None), counter)
    assert isinstance(result, str) and "cut.wav" in result
    assert counter.seen[0] > 0 and counter.seconds == 0.0  # it counted blocks, then took them back


def test_pool_workers_report_within_their_files_through_the_shared_counter(tmp_path, monkeypatch):
    # every group of windows sleeps in the hanging toy, so each file takes a while in its worker
    monkeypatch.setenv(HANG_VARIABLE, "0.3")
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.full(int(LONG_S * RATE), HANG_LEVEL, dtype=np.float32), RATE, subtype="FLOAT")
    todo = [AudioItem("a.wav", None), AudioItem("b.wav", None)]
    config = ExtractConfig(audio=str(tmp_path), store="unused", model=HANGING, dataset="d", threads=1, batch=16)
    progress = AudioProgress()
    seen, stop = [], threading.Event()

    def watch():
        while not stop.wait(0.005):
            seen.append(progress.total_seconds)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    durations = []
    try:
        for item, rows in run_pool(config, layout(), tmp_path, todo, 2, progress):
            assert not isinstance(rows, str), rows
            if not durations:
                before_first = list(seen)
            durations.append(rows.duration_s)
            progress.finished(rows.duration_s)
    finally:
        stop.set()
        watcher.join()
    assert durations == [LONG_S, LONG_S]
    # the workers' blocks reached this process before either file was done
    assert any(0 < s < LONG_S for s in before_first), sorted(set(before_first))
    assert len({s for s in before_first if s > 0}) >= 2, sorted(set(before_first))
    assert (progress.done_s, progress.in_flight.seconds, progress.total_seconds) == (2 * LONG_S, 0.0, 2 * LONG_S)


# ---------------------------------------------------------------- the job's loop


class FakeWriter:
    pending_files = 0

    def __init__(self):
        self.added, self.flushes = [], 0

    def add(self, rows):
        self.added.append(rows)

    def flush(self):
        self.flushes += 1


def consume(results, tmp_path, n_files):
    summary = ExtractSummary("p", n_files, 0)
    config = ExtractConfig(audio="a", store="s", model=TOY, dataset="d", progress=True)
    progress = AudioProgress()
    _consume(results, [None] * n_files, FakeWriter(), tmp_path, summary, config, time.perf_counter(), {}, progress)
    return summary, progress


def progress_threads() -> list:
    return [thread for thread in threading.enumerate() if thread.name == "birdemb-progress"]


def test_the_bar_ends_with_the_audio_done_and_its_thread_stops(tmp_path, capsys):
    rows = SimpleNamespace(n_windows=60, duration_s=LONG_S, fingerprint=None)
    summary, progress = consume(iter([(AudioItem("x.wav", None), rows)]), tmp_path, 1)
    assert summary.audio_s == progress.done_s == progress.total_seconds == LONG_S
    assert f"{LONG_S / 3600:.2f} h audio" in capsys.readouterr().err
    assert not progress_threads()


def test_ctrl_c_stops_the_bars_thread(tmp_path):
    def interrupted():
        yield AudioItem("x.wav", None), SimpleNamespace(n_windows=1, duration_s=5.0, fingerprint=None)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        consume(interrupted(), tmp_path, 2)
    assert not progress_threads()
