"""Review and label: windows proposed for one species; yes / no / unsure saved at each click."""
from __future__ import annotations

import streamlit as st

from birdemb.errors import BirdembError
from birdemb.explore.app import labels_file, review
from birdemb.explore.app.data import SCORE_PREFIX
from birdemb.explore.app.views.common import window_card

SHOWN = 4


def render(ctx) -> None:
    st.header("Review and label")
    if not ctx.windows.species:
        st.info("No scores to propose windows from (the model has no classifier and no head was given).")
        return
    annotations = ctx.config.annotations
    species = st.selectbox("species", ctx.windows.species, key="r-species")
    uncertain = ctx.windows.scored_by.startswith("head")
    st.caption(("most uncertain first (head probability nearest 0.5)" if uncertain else
                "highest surrogate score first") + f" · labels are saved to {annotations}")
    try:
        decided = set(labels_file.read_decisions(annotations))
    except BirdembError as error:
        st.error(str(error))
        return
    table = ctx.windows.table
    for row in review.queue(table, species, decided, uncertain, SHOWN):
        r = table.row(row, named=True)
        window_card(ctx, row, key=f"r-{row}", caption=f"{species} {r[SCORE_PREFIX + species]:.3f}")
        cols = st.columns(3)
        for col, decision in zip(cols, labels_file.DECISIONS):
            if col.button(decision, key=f"r-{decision}-{row}-{species}"):
                try:
                    labels_file.record(annotations, r["file"], r["start_s"], r["end_s"], species, decision)
                except BirdembError as error:
                    st.error(str(error))
                    return
                st.toast(f"{r['file']} {r['start_s']:g} s: {decision} for {species}, saved")
                st.rerun()
    counts = {d: sum(1 for v in labels_file.read_decisions(annotations).values() if v.decision == d)
              for d in labels_file.DECISIONS}
    st.caption("decided so far: " + ", ".join(f"{n} {d}" for d, n in counts.items()))
