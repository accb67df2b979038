"""A recording as a stream of windows, for extraction: decode a block, resample it with a
streaming resampler, cut the windows it completes, and drop the audio behind them, so memory
depends on the block length and never on the recording's.

The windows are THE layout of runtime/audio.py, cut by its own frame_windows: window k covers
[k*w, k*w + w) of the file's timeline whichever block its samples arrived in, and the last
windows are cut by frame_audio's rules once the file's length is known. soxr's stream gives the
same samples as its one-shot resample, so the rows equal the whole-file path's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from birdemb.runtime.audio import DECODE_BLOCK_S, Framed, WindowLayout, decode_blocks, frame_windows

# windows handed out together: whole batches for the backbone (16 windows of 1 or 2 frames), so
# its interpreter keeps one batch shape until the file's last windows
WINDOWS_PER_CALL = 16


def resampled_blocks(path: str | Path, sample_rate: int, block_s: float = DECODE_BLOCK_S):
    """The file as mono float32 blocks at `sample_rate` (about `block_s` seconds of the file each),
    with decode_blocks' checks: a damaged or truncated file raises AudioError before the last block."""
    native_rate, blocks = decode_blocks(path, block_s)
    if native_rate == sample_rate:
        yield from blocks
        return
    import soxr

    stream = soxr.ResampleStream(native_rate, sample_rate, 1, dtype="float32", quality="HQ")
    for block in blocks:
        out = stream.resample_chunk(block)
        if len(out):
            yield out
    yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


class WindowStream:
    """Iterate to get a Framed each time `group` more windows are complete, then one with the
    file's last windows (window indices local to each Framed, numbered on from the previous
    one's); after the loop, `n_windows` and `seconds` describe the whole file exactly as
    frame_audio and len(audio) would."""

    def __init__(self, blocks, layout: WindowLayout, group: int = WINDOWS_PER_CALL):
        self.blocks = blocks
        self.layout = layout
        self.group = max(1, group)
        self.samples = 0  # decoded so far, at the layout's rate
        self.n_windows = 0  # windows handed out so far
        offsets = [round(o * layout.sample_rate) for o in layout.frame_offsets_s]
        # a window is complete once every sample of its frames has arrived (a frame may end a
        # sample past the window by rounding), and it is then a full window of any file
        self._span = max(layout.window_samples, max(offsets) + layout.frame_samples)

    @property
    def seconds(self) -> float:
        return self.samples / self.layout.sample_rate

    def __iter__(self):
        step = self.layout.step_samples
        pending = np.zeros(0, dtype=np.float32)  # audio from the start of window n_windows on
        for block in self.blocks:
            pending = np.concatenate([pending, block])
            self.samples += len(block)
            ready = (len(pending) - self._span) // step + 1 if len(pending) >= self._span else 0
            ready -= ready % self.group
            if ready:
                yield self._take(pending, ready)
                pending = pending[ready * step :].copy()  # a copy, so the block behind it is freed
        rest = self.layout.window_count(self.samples) - self.n_windows
        if rest > 0:  # the file's end: frame_audio's rules for the short last window and padding
            yield self._take(pending, rest)

    def _take(self, pending: np.ndarray, count: int) -> Framed:
        self.n_windows += count
        return frame_windows(pending, self.layout, count)
