"""Search: pick a stored window or upload a clip; the nearest stored windows with players."""
from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
import streamlit as st

from birdemb.errors import BirdembError
from birdemb.explore.app import neighbours
from birdemb.explore.app.views.common import window_card


def pick_row(table, file: str, window: int) -> int | None:
    found = table.filter((pl.col("file") == file) & (pl.col("window") == window))
    return int(found["row"][0]) if found.height else None


def render(ctx) -> None:
    st.header("Search by example")
    table = ctx.windows.table
    source = st.radio("query", ["a stored window", "an uploaded clip"], horizontal=True, key="s-source")
    k = st.slider("neighbours", 1, 30, 6, key="s-k")
    query = None
    if source == "a stored window":
        files = sorted(table["file"].unique().to_list())
        file = st.selectbox("file", files, key="s-file")
        windows = table.filter(pl.col("file") == file)["window"].to_list()
        window = st.selectbox("window", windows, key="s-window")
        query = pick_row(table, file, window)
        if query is not None:
            window_card(ctx, query, key="s-query", caption="query", context_s=0.0)
    else:
        upload = st.file_uploader("a recording (wav, flac, mp3, ogg)", key="s-upload")
        start = st.number_input("start second of the query window", 0.0, value=0.0, key="s-start")
        if upload is not None:
            suffix = Path(upload.name).suffix or ".wav"
            with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
                handle.write(upload.getvalue())
                handle.flush()
                try:
                    with st.spinner(f"embedding {upload.name} with {ctx.model} ..."):
                        query = neighbours.embed_clip(ctx.config.store, ctx.model, handle.name, float(start))
                except BirdembError as error:
                    st.error(f"{upload.name}: {error}")
                    return
    if query is None or not st.button("Search", key="s-go", type="primary"):
        return
    try:
        found, method = neighbours.nearest(ctx.windows, ctx.config.store, ctx.model, query, k)
    except BirdembError as error:
        st.error(str(error))
        return
    st.caption(f"{len(found)} nearest windows by {method}")
    for i, n in enumerate(found):
        if n.row < 0:
            st.write(f"{n.file} window {n.window}: similarity {n.similarity:.3f} (not in the loaded windows)")
            continue
        window_card(ctx, n.row, key=f"s-hit-{i}", caption=f"similarity {n.similarity:.3f} · {n.species or '-'}",
                    context_s=0.0)
