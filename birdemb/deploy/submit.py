"""`birdemb submit` over run directories as well as bundles: a run directory is resolved in
place (its backbone .tflite from the model cache) into the same Bundle that the runtime,
and the Kaggle script, read from a bundle folder."""
from __future__ import annotations

from pathlib import Path

from birdemb.deploy.bundle import bundle_from_run
from birdemb.runtime import profile as runtime_profile
from birdemb.runtime import submission
from birdemb.runtime.bundle_format import BUNDLE_MANIFEST, Bundle, SubmitError, load_bundle
from birdemb.training.rundir import CONFIG


def open_bundle(path: str | Path) -> Bundle:
    """A bundle directory, or a run directory from train-head."""
    path = Path(path)
    if (path / BUNDLE_MANIFEST).is_file():
        return load_bundle(path)
    if (path / CONFIG).is_file():
        return bundle_from_run(path)
    raise SubmitError(f"{path}: neither a bundle ({BUNDLE_MANIFEST}) nor a run directory ({CONFIG})")


def write_submission(sources, audio_dir, out, options=None, **overrides):
    """birdemb.runtime.submission.write_submission, for runs and bundles."""
    return submission.write_submission(sources, audio_dir, out, options, opener=open_bundle, **overrides)


def profile(sources, audio_dir, n_files: int = 3, options=None, cores: int | None = None):
    """birdemb.runtime.profile.profile, for runs and bundles."""
    return runtime_profile.profile(sources, audio_dir, n_files, options, cores, opener=open_bundle)


def run_from_args(sources: list, args) -> int:
    return submission.run_from_args(sources, args, opener=open_bundle)
