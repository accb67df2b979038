"""What several pages draw: the page context, and one window with its spectrogram and player."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from birdemb.errors import BirdembError
from birdemb.explore.app import audio_serving
from birdemb.explore.app.data import AppConfig, Windows


@dataclass
class Context:
    config: AppConfig
    model: str
    windows: Windows
    roots: list[str]  # where audio may be served from


@st.cache_data(max_entries=256, show_spinner=False)
def _media(roots: tuple, file: str, start_s: float, end_s: float, context_s: float) -> tuple[bytes, bytes]:
    samples, rate, begin = audio_serving.cut(list(roots), file, start_s, end_s, context_s)
    marks = (start_s, end_s) if context_s else None
    return audio_serving.wav_bytes(samples, rate), audio_serving.spectrogram_png(samples, rate, marks=marks,
                                                                                 begin_s=begin)


def window_card(ctx: Context, row: int, key: str, caption: str = "", context_s: float | None = None) -> bool:
    """Spectrogram and player of one stored window (context either side on request); an error
    is a message naming the file. Returns whether the audio was served."""
    r = ctx.windows.table.row(int(row), named=True)
    label = f"{r['file']} · window {r['window']} ({r['start_s']:g}-{r['end_s']:g} s)"
    st.markdown(f"**{label}**" + (f" · {caption}" if caption else ""))
    if context_s is None:
        context_s = 5.0 if st.checkbox("context ±5 s", key=f"ctx-{key}") else 0.0
    try:
        wav, png = _media(tuple(ctx.roots), r["file"], float(r["start_s"]), float(r["end_s"]), float(context_s))
    except BirdembError as error:
        st.error(str(error))
        return False
    st.image(png, width="stretch")
    st.audio(wav, format="audio/wav")
    return True
