"""Decode audio once, downmix, resample directly to a backbone's rate, and cut windows.

Decoding reads blocks (runtime/stream.py streams them for long recordings) and ends by checking
the file held all the audio its header promises: a file cut short is an AudioError, never rows.

The window layout is defined here and nowhere else: window k covers [k*w, k*w + w) seconds
of the file's own timeline; each window is seen by the backbone as one or more frames of the
backbone's length, evenly spaced from the window's start (BirdNET's 3 s frames in a 5 s
window start at +0 s and +2 s).
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError

AUDIO_EXTENSIONS = (".ogg", ".oga", ".mp3", ".flac", ".wav", ".aif", ".aiff", ".opus", ".m4a")


class AudioError(BirdembError):
    """A file that could not be decoded; the message names the file and the problem."""


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Return the file as mono float32 at `sample_rate`, resampled once from its own rate."""
    native_rate, blocks = decode_blocks(path)
    return resample(np.concatenate(list(blocks)), native_rate, sample_rate)


def resample(data: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """One direct resampling step (soxr, high quality); none when the rates match."""
    if from_rate == to_rate:
        return data
    import soxr

    return soxr.resample(data, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


# ---------------------------------------------------------------- decoding in blocks, checked whole

DECODE_BLOCK_S = 60.0  # native audio per read: bounds memory whatever the recording's length
TRUNCATED_AFTER_S = 0.5  # decoded audio this much shorter than the header says: the file is cut short


def decode_blocks(path: str | Path, block_s: float = DECODE_BLOCK_S) -> tuple:
    """The file's own sample rate, and its audio as mono float32 blocks of `block_s` seconds at
    that rate. The blocks raise AudioError on a decode error partway, on NaN, and after the last
    block if the file holds less audio than its header says, so a caller that reads them all never
    takes a damaged file for a whole one."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        handle = sf.SoundFile(str(path))
    except Exception as error:  # libsndfile cannot read it: try ffmpeg if the machine has one
        data, rate = _decode_fallback(path, error)
        return rate, _checked(path, iter([_downmix(data)]), rate, claimed=None, ogg=False)
    rate = int(handle.samplerate)
    claimed = _claimed_frames(path, handle.format, handle.frames)
    return rate, _checked(path, _read_blocks(path, handle, block_s), rate, claimed, ogg=handle.format == "OGG")


def read_span(path: str | Path, start_s: float, end_s: float) -> tuple[np.ndarray, int]:
    """[start_s, end_s) of a recording, mono float32 at its own rate, and that rate: read by
    seeking where libsndfile can (an hour-long recording is not decoded for 5 s), else decoded
    block by block up to `end_s`."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            rate = int(handle.samplerate)
            handle.seek(round(start_s * rate))
            audio = handle.read(round(end_s * rate) - round(start_s * rate), dtype="float32", always_2d=True)
            return _downmix(audio), rate
    except (RuntimeError, sf.LibsndfileError):
        rate, blocks = decode_blocks(path)
        first, last = round(start_s * rate), round(end_s * rate)
        kept, at = [], 0
        for block in blocks:
            if at + len(block) > first and at < last:
                kept.append(block[max(0, first - at):max(0, last - at)])
            at += len(block)
            if at >= last:
                break
        return (np.concatenate(kept) if kept else np.zeros(0, np.float32)), rate


def _read_blocks(path: Path, handle, block_s: float):
    size, done = max(1, round(block_s * handle.samplerate)), 0
    with handle:
        while True:
            try:
                block = handle.read(size, dtype="float32", always_2d=True)
            except Exception as error:  # libsndfile gives up partway: never a partial success
                rate = handle.samplerate
                where = f"{_position(handle, done) / rate:.1f} s of {handle.frames / rate:.1f} s"
                raise AudioError(f"{path}: decode error at {where} ({_first_line(error)})") from None
            if len(block) == 0:
                return
            done += len(block)
            yield _downmix(block)


def _position(handle, fallback: int) -> int:
    """Where libsndfile stopped (it has advanced past the frames it decoded before failing)."""
    try:
        return max(int(handle.tell()), fallback)
    except Exception:
        return fallback


def _downmix(data: np.ndarray) -> np.ndarray:
    """Mono: the channels' mean. Added column by column, in the order numpy's mean adds a short
    row (so the same float32 result), 10x faster than that mean along rows of two samples."""
    if data.ndim == 2:
        if data.shape[1] == 1:
            data = data[:, 0]
        else:
            mixed = data[:, 0].astype(np.float32, copy=True)
            for channel in range(1, data.shape[1]):
                mixed += data[:, channel]
            mixed /= np.float32(data.shape[1])
            data = mixed
    return np.ascontiguousarray(data, dtype=np.float32)


def _checked(path: Path, blocks, rate: int, claimed: int | None, ogg: bool):
    decoded = 0
    for block in blocks:
        if not np.isfinite(block).all():
            raise AudioError(f"{path}: decoded samples contain NaN or infinity (at {decoded / rate:.1f} s)")
        decoded += len(block)
        yield block
    if decoded == 0:
        raise AudioError(f"{path}: no audio samples (empty file)")
    if claimed is not None and (claimed - decoded) / rate > TRUNCATED_AFTER_S:
        raise AudioError(f"{path}: truncated: header says {claimed / rate:.1f} s, decoded {decoded / rate:.1f} s")
    if ogg and not _ogg_ends_cleanly(path):
        raise AudioError(f"{path}: truncated: the Ogg stream has no end page, decoded {decoded / rate:.1f} s")


def _claimed_frames(path: Path, container: str, header_frames: int) -> int | None:
    """How many frames the file's header promises, where the header states it (libsndfile clamps
    a WAV's count to the bytes present, and estimates an untagged MP3's from its size)."""
    if container in ("WAV", "WAVEX"):
        return _riff_data_frames(path)
    if container == "MP3":
        return header_frames if _mp3_has_length_tag(path) else None
    if container == "FLAC":
        return header_frames or None  # STREAMINFO total samples; 0 means unknown
    return None  # OGG has no length in its header: _ogg_ends_cleanly checks it ends properly


def _riff_data_frames(path: Path) -> int | None:
    """Frames the data chunk of a PCM/float RIFF WAV declares; None when it declares nothing usable."""
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF" or f.read(8)[4:] != b"WAVE":
            return None
        align = None
        while len(chunk := f.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"fmt ":
                fmt = f.read(size)
                tag, align = int.from_bytes(fmt[:2], "little"), int.from_bytes(fmt[12:14], "little")
                if tag not in (1, 3, 0xFFFE):  # compressed (ADPCM, GSM): bytes do not map to frames
                    return None
                f.seek(size % 2, 1)
            elif name == b"data":  # 0 or 0xFFFFFFFF: a recorder never finalised the header
                return size // align if align and size not in (0, 0xFFFFFFFF) else None
            else:
                f.seek(size + size % 2, 1)
    return None


def _mp3_has_length_tag(path: Path) -> bool:
    """Whether the first MPEG frame carries a Xing/Info/VBRI tag (an exact frame count)."""
    with open(path, "rb") as f:
        head = f.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:  # skip the ID3v2 tag: syncsafe size, footer flag
            start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
            start += 10 if head[5] & 0x10 else 0
        f.seek(start)
        data = f.read(4096)
    sync = next((i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0), None)
    first_frame = b"" if sync is None else data[sync : sync + 48]
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


def _ogg_ends_cleanly(path: Path) -> bool:
    """Whether the file's last Ogg page is whole and flagged end-of-stream, as every finished Ogg
    file's is; a file cut short ends in a partial page or one without the flag."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 65_307))  # the largest possible Ogg page
        tail = f.read()
    at = tail.rfind(b"OggS")
    if at < 0 or len(tail) - at < 27 or tail[at + 4] != 0:
        return False
    segments = tail[at + 27 : at + 27 + tail[at + 26]]
    whole = len(segments) == tail[at + 26] and at + 27 + len(segments) + sum(segments) <= len(tail)
    return whole and bool(tail[at + 5] & 0x04)


def _decode_fallback(path: Path, error: Exception) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: cannot decode audio ({_first_line(error)})") from None
    return _decode_ffmpeg(path, error)


def _decode_ffmpeg(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True,
    )
    if probe.returncode != 0 or not probe.stdout.strip():
        raise AudioError(f"{path}: cannot decode audio ({_first_line(first_error)})")
    rate = int(probe.stdout.strip().split(",")[0])
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-"],
        capture_output=True,
    )
    if out.returncode != 0:
        raise AudioError(f"{path}: ffmpeg failed ({_first_line(out.stderr.decode(errors='replace'))})")
    return np.frombuffer(out.stdout, dtype=np.float32)[:, None], rate


def _first_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


FRAME_GRIDS = ("cover", "centre")


@dataclass(frozen=True)
class WindowLayout:
    """How a file is cut into windows and a window into backbone frames. Windows start every
    `hop_s` seconds (None: every `window_s`, no overlap; BirdNET-Analyzer's "overlap" is
    window_s - hop_s)."""

    window_s: float
    frame_s: float
    sample_rate: int
    min_audio_s: float = 1.0
    hop_s: float | None = None
    frame_grid: str = "cover"  # "cover": frames spread to cover the window; "centre": one frame in its middle

    def __post_init__(self):
        if self.window_s <= 0:
            raise ValueError(f"window length must be positive, got {self.window_s} s")
        if self.frame_s - self.window_s > 1e-9:
            raise ValueError(
                f"a {self.window_s:g} s window is shorter than the model's {self.frame_s:g} s frame"
            )
        if self.frame_grid not in FRAME_GRIDS:
            raise ValueError(f"frame grid {self.frame_grid!r}: choose one of {', '.join(FRAME_GRIDS)}")
        if self.hop_s is not None and not 0 < self.hop_s <= self.window_s + 1e-9:
            raise ValueError(f"windows of {self.window_s:g} s cannot start every {self.hop_s:g} s "
                             f"(overlap {self.window_s - self.hop_s:g} s); the overlap must be at least 0 "
                             f"and less than the window")

    @property
    def overlapping(self) -> bool:
        return self.hop_s is not None and abs(self.hop_s - self.window_s) > 1e-9

    @property
    def step_s(self) -> float:
        return self.hop_s if self.overlapping else self.window_s

    @property
    def frames_per_window(self) -> int:
        if self.frame_grid == "centre":
            return 1
        return max(1, math.ceil(self.window_s / self.frame_s - 1e-9))

    @property
    def frame_offsets_s(self) -> list[float]:
        if self.frame_grid == "centre":
            return [round((self.window_s - self.frame_s) / 2, 6)]
        n = self.frames_per_window
        if n == 1:
            return [0.0]
        step = (self.window_s - self.frame_s) / (n - 1)
        return [round(i * step, 6) for i in range(n)]

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def step_samples(self) -> int:
        return round(self.step_s * self.sample_rate)

    @property
    def frame_samples(self) -> int:
        return round(self.frame_s * self.sample_rate)

    def describe(self) -> dict:
        described = {
            "window_s": self.window_s,
            "frame_s": self.frame_s,
            "frame_offsets_s": self.frame_offsets_s,
            "sample_rate": self.sample_rate,
            "min_audio_s": self.min_audio_s,
            "embedding_pooling": "mean over frames holding real audio",
            "logit_pooling": "max over frames holding real audio",
        }
        if self.overlapping:  # only then: layouts without overlap describe themselves as they always have
            described["hop_s"] = self.hop_s
        if self.frame_grid != "cover":
            described["frame_grid"] = self.frame_grid
        return described

    def window_times(self, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (seconds) of windows 0..n_windows-1."""
        k = np.arange(n_windows, dtype=np.float64)
        return k * self.step_s, k * self.step_s + self.window_s

    def window_count(self, n_samples: int) -> int:
        """Windows kept for a file: the last one only with enough real audio, but always one."""
        if self.overlapping:  # every start that leaves at least min_audio_s (and a sample) of audio
            least = max(1, round(self.min_audio_s * self.sample_rate))
            return max(1, (n_samples - least) // self.step_samples + 1 if n_samples >= least else 1)
        full = n_samples // self.window_samples
        rest = n_samples - full * self.window_samples
        keep_last = rest > 0 and rest >= round(self.min_audio_s * self.sample_rate)
        return max(1, full + int(keep_last))


@dataclass
class Framed:
    """All frames of a file, and which window each belongs to."""

    frames: np.ndarray  # [n_frames, frame_samples] float32, zero-padded past the file's end
    frame_window: np.ndarray  # [n_frames] window index of each frame
    n_windows: int

    def window_times(self, layout: WindowLayout) -> tuple[np.ndarray, np.ndarray]:
        return layout.window_times(self.n_windows)


def frame_audio(audio: np.ndarray, layout: WindowLayout) -> Framed:
    """Cut `audio` into the layout's frames. Frames that start past the file's end are left
    out (they hold no audio), so a short last window is pooled over its real frames only."""
    return frame_windows(audio, layout, layout.window_count(len(audio)))


def frame_windows(audio: np.ndarray, layout: WindowLayout, n_windows: int) -> Framed:
    """The frames of the first `n_windows` windows of `audio` (audio[0] is window 0's start),
    zero-padded past its end; frame_audio with the window count given, for audio read in blocks."""
    offsets = [round(o * layout.sample_rate) for o in layout.frame_offsets_s]
    starts, owners = [], []
    for k in range(n_windows):
        base = k * layout.step_samples
        for j, offset in enumerate(offsets):
            start = base + offset
            if j > 0 and start >= len(audio):
                continue
            if j == 0:  # a short last window's first frame moves back (not before the window) to hold its audio
                start = max(base, min(start, len(audio) - layout.frame_samples))
            starts.append(start)
            owners.append(k)
    length = layout.frame_samples
    needed = max(starts) + length
    padded = audio if len(audio) >= needed else np.pad(audio, (0, needed - len(audio)))
    frames = np.stack([padded[s : s + length] for s in starts]).astype(np.float32, copy=False)
    return Framed(frames=frames, frame_window=np.asarray(owners, dtype=np.int64), n_windows=n_windows)


def pool_windows(
    framed: Framed, embeddings: np.ndarray, logits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per window: mean of its frames' embeddings, max of their logits."""
    if len(framed.frame_window) == framed.n_windows:  # one frame per window: nothing to pool
        return embeddings.astype(np.float32, copy=False), (
            None if logits is None else logits.astype(np.float32, copy=False)
        )
    emb = np.zeros((framed.n_windows, embeddings.shape[1]), dtype=np.float32)
    counts = np.bincount(framed.frame_window, minlength=framed.n_windows).astype(np.float32)
    np.add.at(emb, framed.frame_window, embeddings.astype(np.float32, copy=False))
    emb /= counts[:, None]
    pooled_logits = None
    if logits is not None:
        pooled_logits = np.full((framed.n_windows, logits.shape[1]), -np.inf, dtype=np.float32)
        np.maximum.at(pooled_logits, framed.frame_window, logits.astype(np.float32, copy=False))
    return emb, pooled_logits
