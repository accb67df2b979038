"""The Streamlit script `birdemb app` runs: reads its AppConfig from $BIRDEMB_APP, loads the
windows once, and draws the page picked in the sidebar. Everything it shows comes from the
modules beside it; a store or run that cannot be read is one message naming the file."""
from __future__ import annotations

import os

import streamlit as st

from birdemb.errors import BirdembError
from birdemb.explore.app import data
from birdemb.explore.app.views import common, map, overview, retrain, review, search, windows

ENV = "BIRDEMB_APP"
PAGES = {"Overview": overview, "Windows": windows, "Map": map, "Search": search, "Review and label": review,
         "Retrain": retrain}


@st.cache_resource(show_spinner="reading the store ...")
def load(config_json: str) -> common.Context:
    config = data.AppConfig.from_json(config_json)
    model = data.pick_model(config.store, config.model, config.run)
    loaded = data.load_windows(config.store, model, config.run, data.taxonomy_path(config))
    roots = data.all_audio_roots(config.store) + [a for a in config.audio if a]
    return common.Context(config, model, loaded, roots)


def main() -> None:
    st.set_page_config(page_title="birdemb", layout="wide")
    config_json = os.environ.get(ENV)
    if not config_json:
        st.error(f"no store given: start the app with `birdemb app --store DIR` (${ENV} is not set)")
        return
    try:
        ctx = load(config_json)
    except BirdembError as error:
        st.error(str(error))
        return
    st.sidebar.title("birdemb")
    st.sidebar.caption(f"{ctx.config.store} · {ctx.model} · scores: {ctx.windows.scored_by}")
    page = st.sidebar.radio("page", list(PAGES), key="page")
    try:
        PAGES[page].render(ctx)
    except BirdembError as error:
        st.error(str(error))


main()
