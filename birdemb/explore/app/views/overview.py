"""Overview: what `birdemb info` knows, failures, species counts, call rate and eda figures."""
from __future__ import annotations

import streamlit as st

from birdemb.explore.app import data


def render(ctx) -> None:
    st.header("Overview")
    found = data.overview(ctx.config.store)
    st.subheader("Store")
    st.dataframe([{k: v for k, v in row.items() if k != "path"} for row in found["info"]], hide_index=True)
    table = ctx.windows.table
    rate = data.call_rate(table, ctx.windows.species)
    cols = st.columns(4)
    cols[0].metric("windows", f"{table.height}")
    cols[1].metric("files", f"{table['file'].n_unique()}")
    cols[2].metric("call rate", "-" if rate is None else f"{rate:.0%}", help=f"a scored species > 0.5 ({ctx.windows.scored_by})")
    cols[3].metric("audio folders", f"{len(ctx.roots)}")
    counts = data.species_counts(table)
    if counts:
        st.subheader("Folder species")
        st.dataframe([{"species": s, "files": f, "windows": w} for s, f, w in counts], hide_index=True)
    failed = {where: files for where, files in found["failures"].items() if files}
    st.subheader("Failures")
    if failed:
        st.dataframe([{"partition": where, "file": f, "error": e} for where, files in failed.items()
                      for f, e in files.items()], hide_index=True)
    else:
        st.write("No file failed extraction.")
    if found["figures"]:
        st.subheader("eda figures")
        for path in found["figures"][:12]:
            st.image(str(path), caption=path.name)
