"""Extraction: find the audio files (discovery), turn one file into rows (worker), run the
job that plans, schedules and writes (job), on a local process pool or Ray (engines)."""
