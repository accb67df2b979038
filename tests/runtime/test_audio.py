"""Decoding, resampling, the window grid, padding and pooling, on generated audio."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from birdemb.runtime.audio import AudioError, WindowLayout, frame_audio, load_audio, pool_windows
from tests.helpers.audio import tone, write_audio

BIRDNET_5S = WindowLayout(window_s=5.0, frame_s=3.0, sample_rate=48000)


def test_birdnet_frames_sit_at_0_and_2_seconds_of_each_window():
    assert BIRDNET_5S.frame_offsets_s == [0.0, 2.0]
    assert WindowLayout(3.0, 3.0, 48000).frame_offsets_s == [0.0]
    assert WindowLayout(5.0, 5.0, 32000).frame_offsets_s == [0.0]


def test_window_grid_covers_5k_to_5k_plus_5_and_frames_hold_those_samples():
    rate = 48000
    audio = np.arange(12 * rate, dtype=np.float32)  # sample value = its index
    framed = frame_audio(audio, BIRDNET_5S)
    assert framed.n_windows == 3  # [0,5) [5,10) [10,15) with 2 s of real audio in the last
    start, end = framed.window_times(BIRDNET_5S)
    assert start.tolist() == [0, 5, 10] and end.tolist() == [5, 10, 15]
    # window 1, frame at +2 s starts at sample 7 s * rate and is 3 s long
    frame = framed.frames[3]
    assert framed.frame_window.tolist() == [0, 0, 1, 1, 2]
    assert frame[0] == 7 * rate and frame[-1] == 10 * rate - 1
    # window 2 has 2 s of audio: its +0 s frame is real then zero-padded; its +2 s frame would
    # start at 12 s, past the end, so it is not made at all
    last = framed.frames[4]
    assert last[0] == 10 * rate and last[2 * rate - 1] == 12 * rate - 1
    assert not last[2 * rate :].any()


def test_short_last_window_is_dropped_below_minimum_but_a_file_keeps_one_window():
    rate = 48000
    assert BIRDNET_5S.window_count(10 * rate + rate // 2) == 2  # 0.5 s left < 1 s minimum
    assert BIRDNET_5S.window_count(10 * rate + rate) == 3  # exactly 1 s is kept
    assert BIRDNET_5S.window_count(rate // 10) == 1  # a 0.1 s file still yields one window
    lenient = WindowLayout(5.0, 3.0, 48000, min_audio_s=0.25)
    assert lenient.window_count(10 * rate + rate // 2) == 3


def test_pooling_is_mean_of_embeddings_and_max_of_logits_per_window():
    framed = frame_audio(np.ones(12 * 48000, dtype=np.float32), BIRDNET_5S)  # owners 0,0,1,1,2
    emb = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
    logits = np.array([[1, -5], [3, -7], [0, 0], [-1, 2], [9, 9]], dtype=np.float32)
    pooled_emb, pooled_logits = pool_windows(framed, emb, logits)
    np.testing.assert_allclose(pooled_emb, [[1, 2], [5, 6], [8, 9]])
    np.testing.assert_allclose(pooled_logits, [[3, -5], [0, 2], [9, 9]])


def test_window_shorter_than_model_frame_is_refused():
    with pytest.raises(ValueError, match="shorter than the model"):
        WindowLayout(window_s=3.0, frame_s=5.0, sample_rate=32000)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
@pytest.mark.parametrize("rate,channels", [(48000, 1), (44100, 2), (32000, 1), (22050, 2)])
def test_any_format_rate_and_channel_count_decodes_to_mono_at_the_asked_rate(tmp_path, suffix, rate, channels):
    path = write_audio(tmp_path / f"a{suffix}", 2.0, rate, channels=channels)
    audio = load_audio(path, 48000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 2.0 * 48000) <= 2


def test_stereo_is_downmixed_by_averaging_channels(tmp_path):
    left = np.full(4800, 0.5, dtype=np.float32)
    right = np.full(4800, -0.1, dtype=np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 48000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav", 48000), 0.2, atol=1e-6)


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_downmix_equals_numpys_channel_mean_bit_for_bit(tmp_path, channels):
    """Stores made before the faster downmix hold the same samples' embeddings."""
    data = np.random.default_rng(channels).uniform(-1, 1, (48_000, channels)).astype(np.float32)
    sf.write(tmp_path / "m.wav", data, 48000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "m.wav", 48000), data.mean(axis=1, dtype=np.float32))


def test_matching_rate_is_not_resampled(tmp_path):
    samples = tone(1.0, 48000)[:, 0]
    sf.write(tmp_path / "x.wav", samples, 48000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "x.wav", 48000), samples)


def test_resampling_is_one_direct_step_preserving_a_tone(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    sf.write(tmp_path / "t.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), rate, subtype="FLOAT")
    audio = load_audio(tmp_path / "t.wav", 48000)
    assert len(audio) == 48000
    spectrum = np.abs(np.fft.rfft(audio[4800:-4800]))
    peak_hz = np.argmax(spectrum) * 48000 / len(audio[4800:-4800])
    assert abs(peak_hz - 1000) < 3


@pytest.mark.parametrize(
    "content,problem",
    [(b"", "empty"), (b"this is not audio at all" * 40, "cannot decode"), (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot decode")],
)
def test_bad_files_raise_an_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=problem) as error:
        load_audio(path, 48000)
    assert str(path) in str(error.value)


def test_centre_grid_takes_one_frame_in_the_middle_of_each_window():
    layout = WindowLayout(5.0, 3.0, 100, frame_grid="centre")
    assert layout.frames_per_window == 1 and layout.frame_offsets_s == [1.0]
    audio = np.arange(1280, dtype=np.float32)  # 12.8 s at 100 Hz: windows 0, 1 and a 2.8 s last one
    framed = frame_audio(audio, layout)
    assert framed.n_windows == 3 and framed.frame_window.tolist() == [0, 1, 2]
    assert [f[0] for f in framed.frames] == [100.0, 600.0, 1000.0]  # +1 s; the short last window's at its start
    assert framed.frames[2][-20:].tolist() == [0.0] * 20  # zero-padded past the file's end
    assert layout.describe()["frame_grid"] == "centre" and "frame_grid" not in WindowLayout(5.0, 3.0, 100).describe()


def test_centre_grid_frame_of_a_short_last_window_moves_back_to_hold_its_audio():
    layout = WindowLayout(5.0, 3.0, 100, min_audio_s=1.0, frame_grid="centre")
    framed = frame_audio(np.ones(600, dtype=np.float32), layout)  # 6 s: the last window has 1 s of audio
    assert framed.n_windows == 2
    assert framed.frames[1][:100].tolist() == [1.0] * 100  # its audio, not a frame of padding


def test_centre_grid_streamed_in_blocks_equals_the_whole_file():
    from birdemb.runtime.stream import WindowStream

    layout = WindowLayout(5.0, 3.0, 100, frame_grid="centre")
    audio = np.random.default_rng(0).standard_normal(4321).astype(np.float32)
    whole = frame_audio(audio, layout)
    blocks = [audio[i : i + 700] for i in range(0, len(audio), 700)]
    streamed = list(WindowStream(iter(blocks), layout, group=2))
    np.testing.assert_array_equal(np.concatenate([f.frames for f in streamed]), whole.frames)
    assert sum(f.n_windows for f in streamed) == whole.n_windows


def test_layouts_round_trip_through_their_description():
    from birdemb.runtime.bundle_format import layout_from_dict

    for layout in (WindowLayout(5.0, 3.0, 48000), WindowLayout(5.0, 3.0, 48000, frame_grid="centre"),
                   WindowLayout(3.0, 3.0, 48000, hop_s=1.5)):
        assert layout_from_dict(layout.describe()) == layout
    with pytest.raises(ValueError, match="frame grid"):
        WindowLayout(5.0, 3.0, 48000, frame_grid="middle")


def test_read_span_seeks_or_decodes_to_the_same_samples(tmp_path, monkeypatch):
    from birdemb.runtime.audio import read_span

    path = write_audio(tmp_path / "a.flac", 7.0, 22050, channels=2, seed=3)
    whole = load_audio(path, 22050)
    seeked, rate = read_span(path, 2.5, 4.0)
    assert rate == 22050
    np.testing.assert_array_equal(seeked, whole[round(2.5 * rate):round(4.0 * rate)])

    seek, refused = sf.SoundFile.seek, []

    def no_seek(self, frames, whence=sf.SEEK_SET):  # read_span's seek fails once; the decoder's own work
        if whence == sf.SEEK_SET and frames and not refused:
            refused.append(frames)
            raise RuntimeError("not seekable")
        return seek(self, frames, whence)

    monkeypatch.setattr(sf.SoundFile, "seek", no_seek)  # the block-decoding path
    decoded, _ = read_span(path, 2.5, 4.0)
    assert refused == [round(2.5 * 22050)]
    np.testing.assert_array_equal(decoded, seeked)
