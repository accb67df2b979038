"""Windows: filter by dataset, file, folder species and score; each window's spectrogram and player."""
from __future__ import annotations

import polars as pl
import streamlit as st

from birdemb.explore.app.data import SCORE_PREFIX
from birdemb.explore.app.views.common import window_card

PAGE = 8


def filtered(table, dataset=None, species=None, file_text="", score_species=None, min_score=0.0):
    """The rows matching the filters, highest score first when a score species is chosen."""
    if dataset:
        table = table.filter(pl.col("dataset") == dataset)
    if species:
        table = table.filter(pl.col("species") == species)
    if file_text:
        table = table.filter(pl.col("file").str.contains(file_text, literal=True))
    if score_species and SCORE_PREFIX + score_species in table.columns:
        column = SCORE_PREFIX + score_species
        table = table.filter(pl.col(column) >= min_score).sort(column, descending=True)
    return table


def render(ctx) -> None:
    st.header("Windows")
    table = ctx.windows.table
    c = st.columns(4)
    dataset = c[0].selectbox("dataset", [None, *sorted(table["dataset"].unique().to_list())], key="w-dataset")
    species = c[1].selectbox("folder species", [None, *sorted(table["species"].drop_nulls().unique().to_list())],
                             key="w-species")
    file_text = c[2].text_input("file contains", key="w-file")
    score_species = c[3].selectbox(f"score ({ctx.windows.scored_by})", [None, *ctx.windows.species], key="w-score")
    min_score = st.slider("minimum score", 0.0, 1.0, 0.0, 0.05, key="w-min") if score_species else 0.0
    shown = filtered(table, dataset, species, file_text, score_species, min_score)
    st.caption(f"{shown.height} of {table.height} windows")
    pages = max(1, -(-shown.height // PAGE))
    page = st.number_input("page", 1, pages, 1, key="w-page") if pages > 1 else 1
    for r in shown.slice((page - 1) * PAGE, PAGE).iter_rows(named=True):
        score = f"{score_species} {r[SCORE_PREFIX + score_species]:.3f}" if score_species else (r["species"] or "")
        window_card(ctx, r["row"], key=f"w-{r['row']}", caption=score)
