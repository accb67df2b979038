"""Exploration: pseudo-label hits per window, statistics (frequencies, FPGrowth, rules), the
eda report, PaCMAP projections, figures, and a generated sample store."""
