"""What a reader yields, shared by every reader module: records, problems, skipped records.

A reader yields ``(record_no, item)``: a ``dict`` (a raw record), a :class:`Problem` (the
record, or the whole file, cannot be read) or a :class:`Skipped` (a record that is never a
document by design). Invalid UTF-8 is replaced by U+FFFD through the ``tokenmill_repair``
error handler, which counts the repairs per thread (:func:`take_repairs`).
"""

from __future__ import annotations

import codecs
import threading
from dataclasses import dataclass
from typing import Any

_repairs = threading.local()


def _count_repair(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)  # registered for decoding only
    _repairs.n = getattr(_repairs, "n", 0) + 1
    return "\ufffd", err.end


codecs.register_error("tokenmill_repair", _count_repair)


def take_repairs() -> int:
    """Invalid sequences replaced by U+FFFD on this thread since the last call."""
    n = getattr(_repairs, "n", 0)
    _repairs.n = 0
    return n


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="tokenmill_repair")


@dataclass
class Problem:
    reason: str  # short rule name, prefixed with "ingest." when stored
    detail: str
    raw: str | int | None = None  # the record's raw text, or the offending value (a length)


@dataclass(frozen=True)
class Skipped:
    """A record skipped on purpose (never a document): counted by kind, not rejected."""

    kind: str


Item = tuple[int | None, "dict[str, Any] | Problem | Skipped"]
