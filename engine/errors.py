"""Errors a user can act on. The CLI prints their message, never a traceback."""


class RealcalError(Exception):
    """Base class: the message says what was expected and how to fix it."""


class WorkspaceError(RealcalError):
    pass


class DatasetError(RealcalError):
    """A problem with a whole dataset file: the import is refused and nothing is written."""


class ImportAborted(RealcalError):
    """``--strict`` turned a skipped record into an abort; nothing is written."""


class AssetNotFound(RealcalError):
    """A model weight file could not be resolved."""
