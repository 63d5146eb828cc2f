"""The two kinds of failure a stage can raise: bad input data, and bad configuration.

Flows use the distinction for retries: a DataError never succeeds on retry, an OSError may.
"""


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
