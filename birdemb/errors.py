"""Errors that the command line reports as one line, without a traceback."""
from birdemb.audio import AudioError
from birdemb.backbones.base import BackboneError
from birdemb.bundle import BundleError
from birdemb.corpus import CorpusError
from birdemb.rundir import RunError
from birdemb.species import SpeciesError
from birdemb.store import StoreError
from birdemb.submit import SubmitError


class UsageError(Exception):
    """Arguments that do not make sense together."""


# Modules with their own error class add it here.
USER_ERRORS: tuple[type[BaseException], ...] = (
    AudioError, BackboneError, CorpusError, RunError, SpeciesError, StoreError, UsageError,
    BundleError, SubmitError,
    FileNotFoundError,
)
