"""The light runtime: decoding and THE window layout, the TFLite runner, the numpy head, the
bundle format, scoring and post-processing. Exactly what the single-file Kaggle script
inlines, so nothing here imports torch, lightning, tensorflow (but as the runner's last
resort) or polars, nor any birdemb package above it."""
