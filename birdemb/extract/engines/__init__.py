"""Where extraction's workers run: a local process pool, or the workers of a Ray cluster.
Each engine yields (item, result) as files finish: the file's FileRows, a Spilled part (a
long file's rows written to disk as they were made; local engine only), or an error message."""
