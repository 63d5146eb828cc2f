"""Reject records: how a row that a stage does not pass on is kept, with its reason.

Every stage writes its rejects through these helpers, so the columns (``REJECT_SCHEMA``) and the
one truncation rule live here: a rejected text longer than ``REJECT_TEXT_LIMIT`` characters is
cut in the rejects view (its full text stays in the source file it names).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from .hashing import canonical_json
from .schema import REJECT_SCHEMA

REJECT_TEXT_LIMIT = 4_096


def reject_row(
    reason: str,
    *,
    doc_id: str | None = None,
    value: Any = None,
    threshold: str | None = None,
    duplicate_of: str | None = None,
    detail: str | dict[str, Any] | None = None,
    source: str | None = None,
    source_file: str | None = None,
    record: int | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """One reject record; a plain-text ``detail`` becomes ``{"error": detail}``."""
    if isinstance(detail, dict):
        detail = json.dumps(detail, ensure_ascii=False, sort_keys=True)
    elif detail is not None and not detail.startswith("{"):
        detail = json.dumps({"error": detail}, ensure_ascii=False)
    return {
        "id": doc_id,
        "reason": reason,
        "value": None if value is None else str(value),
        "threshold": threshold,
        "duplicate_of": duplicate_of,
        "detail": detail,
        "source": source,
        "source_file": source_file,
        "source_record": record,
        "text": text,
    }


def reject_rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rejects as an Arrow table, texts cut to REJECT_TEXT_LIMIT characters."""
    for r in rows:
        t = r.get("text")
        if isinstance(t, str) and len(t) > REJECT_TEXT_LIMIT:
            r["text"] = t[:REJECT_TEXT_LIMIT]
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


class RejectSink:
    """The rejects of one unit of work: counted by reason and written with the unit's lineage.

    ``prefix`` (e.g. ``"ingest."``) starts every reason; ``raw`` records that are not text are
    kept as canonical JSON.
    """

    def __init__(self, writer: Any, prefix: str, source: str | None, source_file: str | None):
        self.writer = writer
        self.prefix = prefix
        self.source = source
        self.source_file = source_file
        self.counts: dict[str, int] = {}
        self._rows: list[dict[str, Any]] = []

    def add(
        self,
        reason: str,
        detail: str | dict[str, Any] | None,
        *,
        record: int | None = None,
        raw: Any = None,
        value: Any = None,
        doc_id: str | None = None,
    ) -> None:
        reason = self.prefix + reason
        self.counts[reason] = self.counts.get(reason, 0) + 1
        text = raw if raw is None or isinstance(raw, str) else canonical_json(raw)
        self._rows.append(
            reject_row(
                reason,
                doc_id=doc_id,
                value=value,
                detail=detail,
                source=self.source,
                source_file=self.source_file,
                record=record,
                text=text,
            )
        )
        if len(self._rows) >= 1_024:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.writer.write(reject_rows_table(self._rows))
            self._rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()
