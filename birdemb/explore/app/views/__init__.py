"""The app's pages, each a module with `render(ctx)`; `streamlit_app.py` picks one from the
sidebar. (Not named `pages/`: Streamlit would make that folder a multipage app of its own.)"""
