"""Errors a user can act on. The CLI prints their message, never a traceback."""
import errno


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


# What the file system said, as the user can act on it: a full disk, a read-only one, missing permissions.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "no space left on the device; free some space and run the command again",
    errno.EDQUOT: "disk quota exceeded; free some space and run the command again",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}

