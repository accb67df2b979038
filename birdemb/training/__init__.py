"""Head training: configuration, stored windows as arrays, the split by file, heads, losses,
metrics, the Lightning module, fitting, the run directory, evaluation and sweeps."""
