"""`birdemb app`: a local Streamlit app over a feature store to look, listen, search, label and
retrain. The logic lives in small pure modules (data, audio_serving, labels_file, review,
neighbours, retrain) that the tests call directly; `streamlit_app.py` and `views/` only draw."""
