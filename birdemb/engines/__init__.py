"""Ways to run extraction beyond the local process pool."""
