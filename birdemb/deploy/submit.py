"""`birdemb submit` over run directories as well as bundles: a run directory is resolved in
place (its backbone .tflite from the model cache) into the same Bundle that the runtime,
and the Kaggle script, read from a bundle folder. Here too the location filter: per-file
species masks from BirdNET's location model, handed to the runtime as plain data."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from birdemb.deploy.bundle import bundle_from_run
from birdemb.deploy.location_filter import LocationOptions, file_masks
from birdemb.runtime import profile as runtime_profile
from birdemb.runtime import submission
from birdemb.runtime.bundle_format import BUNDLE_MANIFEST, Bundle, SubmitError, load_bundle, open_bundles
from birdemb.runtime.scoring import SubmitOptions, list_soundscapes
from birdemb.training.rundir import CONFIG


def open_bundle(path: str | Path) -> Bundle:
    """A bundle directory, or a run directory from train-head."""
    path = Path(path)
    if (path / BUNDLE_MANIFEST).is_file():
        return load_bundle(path)
    if (path / CONFIG).is_file():
        return bundle_from_run(path)
    raise SubmitError(f"{path}: neither a bundle ({BUNDLE_MANIFEST}) nor a run directory ({CONFIG})")


def species_masks(audio_dir, species: list[str], location: LocationOptions) -> tuple[dict, list[str]]:
    """file stem -> per species kept (True) at the file's place, and the report lines."""
    files = list_soundscapes(audio_dir)
    masks, lines = file_masks([p.name for p in files], list(species), location)
    return {Path(name).stem: mask for name, mask in masks.items()}, lines


def with_location(sources, audio_dir, options: SubmitOptions, location: LocationOptions | None):
    """(bundles, options with the location filter's species masks, report lines)."""
    bundles = open_bundles(sources, open_bundle)
    if location is None or not location.active:
        return bundles, options, []
    masks, lines = species_masks(audio_dir, bundles[0].species, location)
    return bundles, replace(options, species_masks=masks), lines


def write_submission(sources, audio_dir, out, options=None, location: LocationOptions | None = None, **overrides):
    """birdemb.runtime.submission.write_submission, for runs and bundles; `location`: keep
    only the species expected at each file's place (summary.notes reports it)."""
    options = replace(options or SubmitOptions(), **overrides)
    bundles, options, lines = with_location(sources, audio_dir, options, location)
    summary = submission.write_submission(bundles, audio_dir, out, options, opener=open_bundle)
    summary.notes = lines
    return summary


def profile(sources, audio_dir, n_files: int = 3, options=None, cores: int | None = None):
    """birdemb.runtime.profile.profile, for runs and bundles."""
    return runtime_profile.profile(sources, audio_dir, n_files, options, cores, opener=open_bundle)


def location_from_args(args) -> LocationOptions:
    return LocationOptions(lat=args.lat, lon=args.lon, week=args.week, metadata=args.location_metadata,
                           threshold=args.location_threshold, birds_only=args.birds_only, taxonomy=args.taxonomy)


def run_from_args(sources: list, args) -> int:
    options = submission.options_from_args(args)
    bundles, options, lines = with_location(sources, args.audio, options, location_from_args(args))
    for line in lines:
        print(f"location filter: {line}", flush=True)
    return submission.run_from_args(bundles, args, opener=open_bundle, options=options)
