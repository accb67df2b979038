"""Where extraction's workers run: a local process pool, or the workers of a Ray cluster.
Each engine yields (item, FileRows or error message) as files finish."""
