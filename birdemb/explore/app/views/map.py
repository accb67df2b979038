"""Map: the PaCMAP projection of the windows as an interactive scatter; selected points are listed and played."""
from __future__ import annotations

import numpy as np
import polars as pl
import streamlit as st

from birdemb.explore.app.data import SCORE_PREFIX
from birdemb.explore.app.views.common import window_card

MAX_POINTS = 5000


@st.cache_data(show_spinner="projecting the windows with PaCMAP ...")
def projection(_embeddings: np.ndarray, key: str, max_points: int = MAX_POINTS, seed: int = 0):
    """(rows, 2-d points) of at most max_points windows (explore.projection: sampling and PaCMAP)."""
    from birdemb.explore.projection import pacmap_2d, sample_indices

    rows = np.sort(sample_indices(len(_embeddings), max_points, seed))
    return rows, pacmap_2d(_embeddings[rows], seed)


def selected_rows(event) -> list[int]:
    """The table rows a chart selection names (points carry their `row`)."""
    selection = (event or {}).get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    points = selection.get("pick", []) if isinstance(selection, dict) else []
    return sorted({int(p["row"]) for p in points if isinstance(p, dict) and "row" in p})


def render(ctx) -> None:
    import altair as alt

    st.header("Map")
    table = ctx.windows.table
    if table.height < 5:
        st.info("Too few windows to project.")
        return
    rows, points = projection(ctx.windows.embeddings, f"{ctx.config.store}:{ctx.model}:{table.height}")
    colour = st.selectbox("colour by", ["folder species", *[f"score {s}" for s in ctx.windows.species]], key="m-c")
    shown = table[rows.tolist()].with_columns(x=pl.Series(points[:, 0]), y=pl.Series(points[:, 1]))
    field = "species" if colour == "folder species" else SCORE_PREFIX + colour.removeprefix("score ")
    shown = shown.with_columns(colour=pl.col(field))
    pick = alt.selection_point(name="pick", fields=["row"], on="click", toggle="true")
    chart = (alt.Chart(shown.select("row", "file", "window", "start_s", "species", "x", "y", "colour").to_pandas())
             .mark_circle(size=40).encode(
                 x=alt.X("x", axis=None), y=alt.Y("y", axis=None),
                 color=alt.Color("colour", title=colour,
                                 scale=alt.Scale(scheme="viridis") if field != "species" else alt.Undefined),
                 opacity=alt.condition(pick, alt.value(0.9), alt.value(0.3)),
                 tooltip=["file", "window", "start_s", "species", "colour"])
             .add_params(pick).properties(height=480))
    event = st.altair_chart(chart, on_select="rerun", key="map", width="stretch")
    chosen = selected_rows(event)
    st.caption(f"{len(rows)} windows projected; click points (shift-click for more) to list and play them")
    for row in chosen[:10]:
        window_card(ctx, row, key=f"m-{row}", context_s=0.0)
