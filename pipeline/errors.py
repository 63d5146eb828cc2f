"""The two kinds of failure a stage can raise: bad input data, and bad configuration.

Flows use the distinction for retries (:func:`is_transient`): a DataError never succeeds on
retry, an OSError may; a programming error or a crashed interpreter must not be retried at all.
"""

from __future__ import annotations

import errno
import os

# Store clients raise their own transient errors; matched by module so that none is imported.
_STORE_ERROR_MODULES = ("botocore.", "aiohttp.", "httpx.", "s3fs.", "gcsfs.", "adlfs.", "requests.")
# OSErrors that a retry cannot fix: the machine is out of space or quota.
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class TokenmillError(Exception):
    """Base class for errors that carry a clear one-line message for the user."""


class ConfigError(TokenmillError):
    """The configuration or command line is wrong (CLI exit code 2)."""


class DataError(TokenmillError):
    """The input data is wrong in a way no retry can fix; the message names file and record."""

    def __init__(self, message: str, *, path: str | None = None, record: int | str | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if record is not None:
                where += f":{record}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.record = record


class ValidationFailed(DataError):
    """A dataset failed its expectation suite and was not published."""


class StorageFull(TokenmillError):
    """Writing a file failed for good: no space left, quota exceeded, or a read-only file system.

    The message names the file. Nothing is published; the units already finished stay in
    staging, so running again after freeing space resumes where the stage stopped.
    """


def storage_full(exc: OSError, path: object) -> StorageFull | None:
    """The one-line error for an OSError writing ``path`` that no retry can fix, else None."""
    if exc.errno not in _PERMANENT_ERRNOS:
        return None
    return StorageFull(
        f"{path}: {os.strerror(exc.errno)} (errno {exc.errno}) while writing it; nothing was "
        "published: free space and run again (finished shards are kept and resume)"
    )


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the work that raised ``exc`` may succeed: I/O, timeouts, store errors.

    Not our own errors (bad data or config), not SystemError, MemoryError, RecursionError or
    programming errors (TypeError, KeyError, ...): those fail the same way every time or mean
    the process is in a bad state.
    """
    if isinstance(exc, TokenmillError):
        return False
    if isinstance(exc, OSError):  # includes ConnectionError and TimeoutError
        return exc.errno not in _PERMANENT_ERRNOS
    return any(
        cls.__module__.startswith(_STORE_ERROR_MODULES) and issubclass(cls, Exception)
        for cls in type(exc).__mro__
    )
