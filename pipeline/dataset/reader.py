"""Reading a published dataset version: its manifest, views and shards, streamed.

Every shard a reader opens is first checked against its manifest entry: its size always (a
``stat``), its sha256 the first time this process opens that file (and again if the file's size
or modification time changes). A damaged shard raises :class:`DamagedShard` naming the file, so a
stage or a training run fails loudly instead of reading it; ``tokenmill verify`` lists every
damaged file of a data root. Hashing costs one read of each input shard per process, 1-2% of a
stage's CPU time at 1 GB (measured in README, "Datasets").
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import storage
from ..errors import DataError
from ..hashing import sha256_file
from .layout import DATA_VIEW, MANIFEST
from .store import evict_cached, is_published


class DamagedShard(DataError):
    """A published shard does not match its manifest (size or sha256): never read it."""


def text_slices(batch: pa.RecordBatch | pa.Table, max_bytes: int, column: str = "text") -> Iterator[Any]:
    """Consecutive slices of a batch holding at most ``max_bytes`` of ``column``'s text each (a
    single longer document is a slice of its own): vectorized work on a slice then needs memory
    bounded by bytes, not by a row count that long documents would blow up."""
    lengths = pc.binary_length(batch.column(column)).fill_null(0).to_numpy(zero_copy_only=False)
    start, size = 0, 0
    for i, n in enumerate(lengths.tolist()):
        if size and size + n > max_bytes:
            yield batch.slice(start, i - start)
            start, size = i, 0
        size += n
    if start < batch.num_rows:
        yield batch.slice(start, batch.num_rows - start)


FileKey = tuple[str, int, int, int]


def file_key(path: str | Path, st: os.stat_result | None = None) -> FileKey:
    """A file as it stands: (path, size, mtime, inode). Anything noted about a file in this
    process is noted under it; a rewrite or a copy over the file changes it."""
    st = os.stat(path) if st is None else st
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


# Files this process has hashed and found intact.
_VERIFIED: set[FileKey] = set()
_VERIFIED_LOCK = threading.Lock()


# Schemas read from shard footers, by file_key: a stage asks its input's schema
# several times (rules, views, reports), 1-2 ms of footer parsing each.
_SCHEMAS: dict[FileKey, pa.Schema] = {}
_SCHEMAS_KEPT = 1_024
_SCHEMAS_LOCK = threading.Lock()


def shard_schema(path: str | Path) -> pa.Schema:
    """A shard's Arrow schema (from its footer, once per process for an unchanged file)."""
    key = file_key(path)
    with _SCHEMAS_LOCK:
        known = _SCHEMAS.get(key)
    if known is None:
        known = pq.read_schema(path)
        _keep_schema(key, known)
    return known


def remember_schema(path: str | Path, st: os.stat_result, schema: pa.Schema) -> None:
    """Note the schema of a shard this process has just written, as it stands (``st``)."""
    _keep_schema(file_key(path, st), schema)


def note_renamed(old: Path, new: Path, st: os.stat_result) -> None:
    """``old``, described (hashed) as it stood at ``st``, is now ``new``: if the rename is all that
    changed, ``new`` counts as verified and keeps its known schema. The next stage of a run in
    this process then reads its input without hashing every byte again."""
    was, now = file_key(old, st), file_key(new)
    if was[1:] != now[1:]:
        return
    with _VERIFIED_LOCK:
        _VERIFIED.add(now)
    with _SCHEMAS_LOCK:
        schema = _SCHEMAS.get(was)
    if schema is not None:
        _keep_schema(now, schema)


def _keep_schema(key: FileKey, schema: pa.Schema) -> None:
    with _SCHEMAS_LOCK:
        _SCHEMAS[key] = schema
        while len(_SCHEMAS) > _SCHEMAS_KEPT:
            _SCHEMAS.pop(next(iter(_SCHEMAS)))


def shard_problem(path: Path, entry: dict[str, Any], full: bool = True) -> str | None:
    """Why a shard file does not match its manifest entry, or None when it does.

    ``full``: also compare the sha256 (once per process for an unchanged file); else the size only.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    if st.st_size != entry["bytes"]:
        return f"{st.st_size} bytes, the manifest says {entry['bytes']}"
    if not full:
        return None
    key = file_key(path, st)
    if key in _VERIFIED:
        return None
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        return f"sha256 {digest[:12]}…, the manifest says {entry['sha256'][:12]}…"
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)
    return None


@dataclass
class Dataset:
    """A published dataset version, opened read-only."""

    path: Path  # the version directory
    _manifest: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = storage.local_path(self.path)
        if not is_published(self.path) and is_published(self.path.parent):
            self.path = self.path.parent  # a view directory such as …/<fp>/data
        if not is_published(self.path):
            raise FileNotFoundError(f"{self.path}: not a published tokenmill dataset (no {MANIFEST})")

    @classmethod
    def open(cls, path: str | Path) -> Dataset:
        """Open a version (or one of its views) by local path or store URL."""
        return cls(storage.local_path(path))

    @property
    def location(self) -> str:
        """Where the version lives, as a user names it: the store URL, else the local path."""
        return storage.display(self.path)

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = json.loads((self.path / MANIFEST).read_text())
        return self._manifest

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def data_path(self) -> Path:
        return self.path / DATA_VIEW

    @property
    def root(self) -> Path:
        """The data root this dataset lives under (…/datasets/<stage>/<fp> → …)."""
        return self.path.parent.parent.parent

    def view_path(self, view: str = DATA_VIEW) -> Path:
        return self.path / view

    def _shards(self, view: str) -> list[dict[str, Any]]:
        entries = self.manifest["views"].get(view)
        if entries is None:
            raise KeyError(f"{self.path}: no view {view!r}")
        return entries["shards"]

    def num_shards(self, view: str = DATA_VIEW) -> int:
        return len(self._shards(view))

    def shard_path(self, index: int, view: str = DATA_VIEW, verify: bool = True) -> Path:
        """The local file of one shard, fetched from the store on first use, checked against the
        manifest (``verify=False``: its size only, for listings that do not read it now)."""
        return self._local(view, self._shards(view)[index], verify)

    def shard_paths(self, view: str = DATA_VIEW, verify: bool = True) -> list[Path]:
        """Local files of every shard of a view (all fetched from a store: prefer `shard_path`)."""
        return [self._local(view, s, verify) for s in self._shards(view)]

    def shard_file(self, view: str, name: str) -> Path | None:
        """The local file of the view's shard called ``name``, or None if the view has none such."""
        for s in self._shards(view):
            if s["file"] == name:
                return self._local(view, s)
        return None

    def _local(self, view: str, shard: dict[str, Any], verify: bool = True) -> Path:
        p = self.path / view / shard["file"]
        remote = storage.url_of(p) is not None
        if remote and not p.is_file():
            storage.fetch(p)
            problem = shard_problem(p, shard)
            if problem:
                p.unlink(missing_ok=True)  # a bad download: the next read fetches it again
                raise DamagedShard(
                    f"{storage.display(p)}: the fetched shard does not match its manifest ({problem})"
                )
            evict_cached(keep=p)
            return p
        problem = shard_problem(p, shard, full=verify)
        if problem:
            raise DamagedShard(
                f"{storage.display(p)}: damaged shard ({problem}); not read. "
                "`tokenmill verify` lists every damaged file"
            )
        if remote:
            storage.touch(p)
        return p

    def damaged(self) -> list[tuple[str, str]]:
        """Every file of the version that does not match the manifest: (path, problem), sorted.

        Shards that are missing, of the wrong size or hash, and Parquet files in a view directory
        that the manifest does not list (DuckDB or `datasets` would read them as part of the view).
        """
        out = []
        for view, entry in sorted(self.manifest["views"].items()):
            listed = set()
            for s in entry["shards"]:
                listed.add(s["file"])
                p = self.path / view / s["file"]
                try:
                    if storage.url_of(p) is not None and not p.is_file():
                        storage.fetch(p)
                        problem = shard_problem(p, s)
                        evict_cached(keep=p)
                    else:
                        problem = shard_problem(p, s)
                except FileNotFoundError:
                    problem = "missing"
                if problem:
                    out.append((storage.display(p), problem))
            d = self.path / view
            for p in sorted(d.glob("*.parquet")) if d.is_dir() else []:
                if p.name not in listed:
                    out.append((storage.display(p), "not listed in the manifest"))
        return out

    @property
    def schema(self) -> pa.Schema:
        return shard_schema(self.shard_path(0))

    def num_rows(self, view: str = DATA_VIEW) -> int:
        return self.manifest["views"][view]["rows"]

    def iter_batches(
        self, view: str = DATA_VIEW, columns: list[str] | None = None, batch_size: int = 4_096
    ) -> Iterator[pa.RecordBatch]:
        """Stream the view shard by shard, never holding more than one batch."""
        for i in range(self.num_shards(view)):
            f = pq.ParquetFile(self.shard_path(i, view))
            yield from f.iter_batches(batch_size=batch_size, columns=columns)

    def read_shard(self, index: int, view: str = DATA_VIEW, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.shard_path(index, view), columns=columns)

    def head(self, n: int = 5, view: str = DATA_VIEW) -> pa.Table:
        """The first ``n`` rows of a view, across shards."""
        batches, rows = [], 0
        for batch in self.iter_batches(view, batch_size=min(n, 4_096)):
            batches.append(batch.slice(0, n - rows))
            rows += batches[-1].num_rows
            if rows >= n:
                break
        if not batches:
            return pq.read_schema(self.shard_path(0, view)).empty_table()
        return pa.Table.from_batches(batches)

    @property
    def parent(self) -> Dataset | None:
        """The previous version of the same series (incremental runs append versions)."""
        p = self.manifest.get("parent")
        return Dataset(self.root / p["path"]) if p else None

    def chain(self) -> list[Dataset]:
        """This version and all earlier versions of its series, oldest first."""
        out: list[Dataset] = []
        d: Dataset | None = self
        while d is not None:
            out.append(d)
            d = d.parent
        return out[::-1]

    def verify(self) -> None:
        """Check every shard's size and sha256 against the manifest; raise naming each damaged file."""
        bad = self.damaged()
        if bad:
            raise DamagedShard("; ".join(f"{p}: {problem}" for p, problem in bad))
