"""Extraction decodes a file in blocks: its rows equal the whole-file path's, its memory does
not grow with the recording, and a file cut short is a recorded failure, never stored rows.

What libsndfile 1.2 does with a file cut short (measured here, not assumed):
- WAV: reads silently to the cut and reports the cut length as the file's, so only the RIFF
  data chunk's size tells (birdemb reads it);
- MP3 with a Xing/Info tag: reads silently to the cut; the tag's frame count tells;
- OGG: reads silently to the cut and there is no length in the header; the last page is
  partial and lacks the end-of-stream flag, which tells;
- FLAC: raises partway ("flac decoder lost sync").
"""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from birdemb import store
from birdemb.extract.discovery import AudioItem
from birdemb.extract.job import ExtractConfig, extract
from birdemb.extract.worker import attempt, file_rows
from birdemb.runtime.audio import AudioError, WindowLayout, frame_audio, load_audio, pool_windows
from birdemb.runtime.stream import WindowStream, resampled_blocks

TOY = "tests.helpers.toy_backbone:ToyBackbone"
BANDS = (500, 1000, 1500, 2000, 2500, 3000, 3500, 4000)  # the toy's bands: each window differs
MP3 = pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3 support")


class FrameStats:
    """A numpy stand-in backbone whose outputs pin each frame's exact samples (3 s frames, so a
    5 s window holds two of them, at +0 and +2 s)."""

    frame_s = 3.0

    def __init__(self, sample_rate: int = 16000):
        self.sample_rate = sample_rate

    def embed(self, frames: np.ndarray):
        picks = frames[:, [0, 1, len(frames[0]) // 2, -2, -1]]
        stats = np.stack([frames.mean(1), frames.std(1), np.abs(frames).sum(1)], axis=1)
        return np.concatenate([picks, stats], axis=1).astype(np.float32), frames[:, ::4000].copy()


@pytest.fixture(scope="module")
def toy():
    from tests.helpers.toy_backbone import ToyBackbone

    return ToyBackbone()


def write_tones(path, seconds: float, rate: int, channels: int = 1, fmt: str | None = None, block_s: float = 1.0):
    """Steady tones stepping through the toy's bands every 3.7 s (so windows differ and tones
    change inside windows), written in blocks: soundfile 0.14 can crash writing long OGG at once."""
    t = np.arange(round(seconds * rate)) / rate
    freq = np.asarray(BANDS, dtype=np.float64)[(t // 3.7).astype(int) % len(BANDS)]
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    mono = (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)
    data = np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1)
    step = round(block_s * rate)
    with sf.SoundFile(path, "w", rate, channels, format=fmt) as out:
        for start in range(0, len(data), step):
            out.write(data[start : start + step])
    return path


def whole_file_rows(backbone, layout: WindowLayout, path):
    """Yesterday's file_rows: the whole file decoded, framed, embedded and pooled at once."""
    audio = load_audio(path, layout.sample_rate)
    framed = frame_audio(audio, layout)
    embedding, logits = pool_windows(framed, *backbone.embed(framed.frames))
    return len(audio) / layout.sample_rate, framed.window_times(layout), embedding, logits


def layout_of(backbone, window_s: float = 5.0) -> WindowLayout:
    return WindowLayout(window_s, backbone.frame_s, backbone.sample_rate)


def cut(path, fraction: float):
    os.truncate(path, int(os.path.getsize(path) * fraction))
    return path


# ---------------------------------------------------------------- (a) rows equal the whole-file path


def assert_same_rows(rows, whole, atol=0.0):
    duration, (start, end), embedding, logits = whole
    assert rows.duration_s == duration
    np.testing.assert_array_equal(rows.start_s, start)
    np.testing.assert_array_equal(rows.end_s, end)
    np.testing.assert_allclose(rows.embedding, embedding, rtol=0, atol=atol)
    np.testing.assert_allclose(rows.logits, logits, rtol=0, atol=atol)


LAYOUTS = [WindowLayout(5.0, 3.0, 16000), WindowLayout(5.0, 5.0, 16000), WindowLayout(2.5, 1.0, 22050, 0.25)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["5s-of-3s-frames", "5s-one-frame", "2.5s-of-1s-frames"])
@pytest.mark.parametrize("seconds", [41.6, 40.4, 40.0, 0.3])  # last window kept, dropped, none, the only one
@pytest.mark.parametrize("block_s,group", [(7.3, 1), (1.9, 1), (7.3, 3), (0.37, 16), (1000.0, 1)])
def test_streamed_windows_are_frame_audio_cut_of_the_whole_file(layout, seconds, block_s, group):
    rate = layout.sample_rate
    audio = np.random.default_rng(1).standard_normal(round(seconds * rate)).astype(np.float32)
    step = round(block_s * rate)
    stream = WindowStream((audio[s : s + step] for s in range(0, len(audio), step)), layout, group=group)
    chunks = list(stream)
    whole = frame_audio(audio, layout)
    firsts = np.cumsum([0] + [c.n_windows for c in chunks[:-1]])
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), whole.frames)
    owners = np.concatenate([c.frame_window + first for c, first in zip(chunks, firsts)])
    np.testing.assert_array_equal(owners, whole.frame_window)
    assert stream.n_windows == whole.n_windows and stream.samples == len(audio)
    assert all(c.n_windows % group == 0 for c in chunks[:-1])


def test_blocks_give_the_whole_file_rows_exactly(tmp_path):
    path = write_tones(tmp_path / "long.wav", 101.6, 44100, channels=2)
    backbone = FrameStats()
    layout = layout_of(backbone)
    rows = file_rows(backbone, layout, tmp_path, AudioItem("long.wav", None), block_s=7.3)
    assert rows.n_windows == 21  # 16 windows, then the last 5 with the 1.6 s one kept
    assert_same_rows(rows, whole_file_rows(backbone, layout, path))  # soxr's stream gives its one-shot samples


def test_toy_backbone_rows_equal_the_whole_file_path_on_a_long_stereo_recording(tmp_path, toy):
    path = write_tones(tmp_path / "long.flac", 213.4, 44100, channels=2)
    layout = layout_of(toy)
    rows = file_rows(toy, layout, tmp_path, AudioItem("long.flac", None), block_s=7.3)
    whole = whole_file_rows(toy, layout, path)
    assert rows.n_windows == 43 and len(np.unique(rows.embedding.round(2), axis=0)) > 8
    assert_same_rows(rows, whole, atol=1e-5)  # TFLite on other batch sizes: float rounding at most


def test_birdnet_rows_equal_the_whole_file_path_across_block_boundaries(tmp_path):
    from birdemb.backbones import load_backbone

    birdnet = load_backbone("birdnet")
    path = write_tones(tmp_path / "mid.wav", 13.5, 44100, channels=2)
    layout = layout_of(birdnet)
    rows = file_rows(birdnet, layout, tmp_path, AudioItem("mid.wav", None), block_s=3.1)
    assert_same_rows(rows, whole_file_rows(birdnet, layout, path), atol=1e-4)


def test_progress_reports_seconds_done_up_to_the_duration(tmp_path):
    write_tones(tmp_path / "p.wav", 171.0, 8000)
    seen = []
    rows = file_rows(FrameStats(8000), layout_of(FrameStats(8000)), tmp_path, AudioItem("p.wav", None), block_s=6.0,
                     progress=seen.append)
    assert len(seen) == 3 and seen == sorted(seen) and seen[-1] == rows.duration_s == 171.0  # 16 + 16 + 2 windows


# ---------------------------------------------------------------- (b) memory independent of length


def peak_bytes(tmp_path, name: str, seconds: float) -> int:
    write_tones(tmp_path / name, seconds, 12000)
    backbone = FrameStats(8000)  # resampled from 12 kHz in the stream
    tracemalloc.start()
    try:
        file_rows(backbone, layout_of(backbone), tmp_path, AudioItem(name, None), block_s=10.0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_recordings_length(tmp_path):
    # 120 s already fills a group of 16 windows plus a block: the most the stream ever holds
    short, long = peak_bytes(tmp_path, "short.wav", 120.0), peak_bytes(tmp_path, "long.wav", 1200.0)
    whole_long = 1200 * 12000 * 4  # the long file decoded at once, before resampling: 58 MB
    assert long - short < 500_000, (short, long)  # 216 more windows of rows: about 20 KB
    assert long < whole_long / 3, (long, whole_long)  # ~10 MB: 16 windows' audio and frames, a block


# ---------------------------------------------------------------- (c, d) truncated files fail, named


def test_wav_whose_header_claims_more_than_it_holds_is_refused_with_both_durations(tmp_path):
    path = write_tones(tmp_path / "cut.wav", 10.0, 16000)
    os.truncate(path, 44 + 5 * 16000 * 2)  # 16-bit mono: header says 10 s, 5 s of samples remain
    expected = f"{path}: truncated: header says 10.0 s, decoded 5.0 s"
    with pytest.raises(AudioError) as error:
        file_rows(FrameStats(), layout_of(FrameStats()), tmp_path, AudioItem("cut.wav", None))
    assert str(error.value) == expected
    with pytest.raises(AudioError, match="header says 10.0 s, decoded 5.0 s"):
        load_audio(path, 48000)  # the submission's whole-file decode refuses it too


@pytest.mark.parametrize("fmt,problem", [
    ("OGG", r"truncated: the Ogg stream has no end page, decoded [1-5]\.\d s"),
    pytest.param("MP3", r"truncated: header says 10\.0 s, decoded [1-5]\.\d s", marks=MP3),
    ("FLAC", r"decode error at \d\.\d s of 10\.0 s"),
])
def test_compressed_file_cut_at_30_percent_is_refused(tmp_path, fmt, problem):
    path = cut(write_tones(tmp_path / f"cut.{fmt.lower()}", 10.0, 32000, fmt=fmt), 0.3)
    with pytest.raises(AudioError, match=problem):
        file_rows(FrameStats(), layout_of(FrameStats()), tmp_path, AudioItem(path.name, None), block_s=1.0)
    with pytest.raises(AudioError, match=problem):
        load_audio(path, 32000)


def test_extract_records_cut_files_as_failures_and_stores_only_the_whole_one(tmp_path, toy):
    audio = tmp_path / "audio"
    audio.mkdir()
    write_tones(audio / "whole.ogg", 12.0, 32000, fmt="OGG")
    cut(write_tones(audio / "cut.ogg", 12.0, 32000, fmt="OGG"), 0.3)
    os.truncate(write_tones(audio / "cut.wav", 10.0, 16000), 44 + 5 * 16000 * 2)
    if "MP3" in sf.available_formats():
        cut(write_tones(audio / "cut.mp3", 10.0, 32000, fmt="MP3"), 0.3)
    config = ExtractConfig(audio=str(audio), store=str(tmp_path / "store"), model=TOY, dataset="d", workers=1,
                           progress=False)
    summary = extract(config)
    directory = store.partition_dir(config.store, "toy", "d")
    assert summary.succeeded == 1 and store.stored_files(directory) == {"whole.ogg"}
    failed = store.failures(directory)
    assert set(failed) == {p.name for p in audio.iterdir()} - {"whole.ogg"}
    assert all("truncated" in message and str(audio) in message for message in failed.values())


def test_attempt_turns_a_truncated_file_into_its_error_message(tmp_path):
    os.truncate(write_tones(tmp_path / "cut.wav", 10.0, 16000), 44 + 5 * 16000 * 2)
    result = attempt(FrameStats(), layout_of(FrameStats()), tmp_path, AudioItem("cut.wav", None))
    assert isinstance(result, str) and "header says 10.0 s, decoded 5.0 s" in result


# ---------------------------------------------------------------- (e) intact files are unchanged


def yesterdays_load_audio(path, rate: int) -> np.ndarray:
    """load_audio before blocks: sf.read whole, mean over channels, one soxr call."""
    import soxr

    data, native = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32)
    return mono if native == rate else soxr.resample(mono, native, rate, quality="HQ").astype(np.float32)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", pytest.param("MP3", marks=MP3)])
def test_intact_files_decode_exactly_as_before_in_blocks_or_whole(tmp_path, fmt):
    path = write_tones(tmp_path / f"ok.{fmt.lower()}", 37.3, 44100, channels=2, fmt=fmt)
    before = yesterdays_load_audio(path, 16000)
    np.testing.assert_array_equal(load_audio(path, 16000), before)
    np.testing.assert_array_equal(np.concatenate(list(resampled_blocks(path, 16000, block_s=4.1))), before)


def test_a_wav_whose_header_never_got_its_length_is_read_to_its_end(tmp_path):
    """A recorder killed before finalising can leave data size 0xFFFFFFFF: no claim, no refusal."""
    path = write_tones(tmp_path / "open.wav", 6.0, 16000)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"data")
    raw[at + 4 : at + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert len(load_audio(path, 16000)) == 6 * 16000
