"""Retrain: train-head on the store plus the app's labels, in the background; then the new
run's ground-truth metrics beside the previous run's."""
from __future__ import annotations

import streamlit as st

from birdemb.explore.app import retrain
from birdemb.explore.app.data import run_config, taxonomy_path


def render(ctx) -> None:
    st.header("Retrain")
    config = ctx.config
    annotations = config.annotations
    if not annotations.is_file():
        st.info(f"No labels yet: label windows on the Review page first (they go to {annotations}).")
        return
    previous = config.run
    surrogate = run_config(previous).get("surrogate") or ctx.model
    scheme = st.radio("training labels", ["annotations", "species"], horizontal=True, key="t-labels",
                      help="annotations: your labels alone (annotated files only); species: folder and "
                           "surrogate labels, with your labels as the ground truth for selection")
    argv_preview = f"birdemb train-head --store {config.store} --embeddings {ctx.model} --surrogate {surrogate} " \
                   f"--labels {scheme} --annotations {annotations} --out {config.workdir}/runs/..."
    st.code(argv_preview, language="bash")
    if st.button("Retrain", key="t-go", type="primary"):
        out = retrain.next_run_dir(config.workdir)
        retrain.start(retrain.command(config.store, ctx.model, surrogate, annotations, out, scheme, previous,
                                      taxonomy_path(config)), out)
        st.session_state["t-run"] = str(out)
    if "t-run" in st.session_state:
        progress(st.session_state["t-run"], previous)


@st.fragment(run_every=1.0)
def progress(run_dir: str, previous: str | None) -> None:
    status = retrain.status(run_dir)
    if status.state == "running":
        st.status(f"training {run_dir} ...", state="running").code("\n".join(status.log_tail) or "starting")
        return
    if status.state != "done":
        st.error(f"{run_dir}: train-head failed (log: {retrain.log_path(run_dir)})")
        st.code("\n".join(status.log_tail))
        return
    st.success(f"new run: {run_dir}")
    st.table(retrain.compare(previous, run_dir))
