"""The one base error. The command line reports any BirdembError as one line, without a
traceback; each stage subclasses it for its own failures. A leaf: imports nothing of birdemb,
so every module (and the single-file Kaggle script) can use it."""


class BirdembError(Exception):
    """A problem the user can fix; the message names the file or value and what is wrong."""


class UsageError(BirdembError):
    """Arguments that do not make sense together."""
