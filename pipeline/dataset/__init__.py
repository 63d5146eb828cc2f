"""The dataset contract between stages: immutable Parquet shards plus `_manifest.json`.

A published dataset version lives in ``<root>/datasets/<stage>/<fingerprint>/``: its
``_manifest.json`` and views, each a directory holding nothing but zstd Parquet shards (so DuckDB,
pyarrow and `datasets.load_dataset("parquet", data_dir=...)` open a view unchanged):

* ``data/``     the output rows (the directory a user opens in DuckDB, pyarrow or `datasets`);
* ``rejects/``  every input row the stage did not pass on, with the rule and measured value;
* any extra view a stage needs (``docs/`` token lists, ``index/`` dedup state, ...).

Writes are atomic: everything is written under ``<root>/datasets/<stage>/.staging/``, the
manifest last, and one ``rename`` publishes the version. Readers only ever see directories whose
name is a fingerprint and which contain ``_manifest.json``. A root may be an object-store URL
(``s3://bucket/prefix``, see `pipeline.storage`); the manifest is then uploaded last.

One module per job:

* :mod:`.layout`   where versions, views, staging and locks live;
* :mod:`.writer`   shards and manifests written;
* :mod:`.staging`  a version being written: one writer at a time, resumable units, publish;
* :mod:`.store`    published versions on an object store (upload, mirror on read);
* :mod:`.reader`   :class:`Dataset`, a published version opened read-only.
"""

from .layout import (
    COMPRESSION,
    DATA_VIEW,
    DEFAULT_ROW_GROUP_ROWS,
    DEFAULT_SHARD_ROWS,
    MANIFEST,
    REJECTS_VIEW,
    STAGING,
    manifest_header,
    staging_base,
    version_dir,
)
from .reader import DamagedShard, Dataset, FileKey, file_key, shard_schema, text_slices
from .staging import Staging, VersionBusy, clean_staging, run_unit_resumable
from .store import cached_shards, evict_cached, fetch_version, is_published, upload_version
from .writer import ShardInfo, ShardWriter, describe_shards, ensure_nonempty, shard_rows, write_manifest

__all__ = [
    "COMPRESSION",
    "DATA_VIEW",
    "DEFAULT_ROW_GROUP_ROWS",
    "DEFAULT_SHARD_ROWS",
    "MANIFEST",
    "REJECTS_VIEW",
    "STAGING",
    "DamagedShard",
    "Dataset",
    "FileKey",
    "ShardInfo",
    "ShardWriter",
    "Staging",
    "VersionBusy",
    "cached_shards",
    "clean_staging",
    "describe_shards",
    "ensure_nonempty",
    "evict_cached",
    "fetch_version",
    "file_key",
    "is_published",
    "manifest_header",
    "run_unit_resumable",
    "shard_rows",
    "shard_schema",
    "staging_base",
    "text_slices",
    "upload_version",
    "version_dir",
    "write_manifest",
]
