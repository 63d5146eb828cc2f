"""Arrow schemas shared by the stages: the canonical document and the reject record."""

import pyarrow as pa

SCHEMA_VERSION = 1

# Every text dataset (ingest, dedup, filter outputs) carries these columns first; a stage may
# append its own columns (quality signals, cluster ids, ...) after them.
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=True),
        pa.field("meta", pa.string(), nullable=True),  # JSON object as text: stable, any keys
        pa.field("source_file", pa.string(), nullable=True),  # lineage: the raw file
        pa.field("source_record", pa.int64(), nullable=True),  # lineage: record number in it
    ]
)

# A rejected row keeps everything needed to audit or restore it.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=True),
        pa.field("reason", pa.string(), nullable=False),  # the rule, e.g. "ingest.not_json"
        pa.field("value", pa.string(), nullable=True),  # the measured value, as text
        pa.field("threshold", pa.string(), nullable=True),
        pa.field("duplicate_of", pa.string(), nullable=True),  # dedup: the kept document's id
        pa.field("detail", pa.string(), nullable=True),  # JSON: cluster id, similarity, error text
        pa.field("source", pa.string(), nullable=True),
        pa.field("source_file", pa.string(), nullable=True),
        pa.field("source_record", pa.int64(), nullable=True),
        pa.field("text", pa.string(), nullable=True),  # the text (possibly truncated, see detail)
    ]
)
