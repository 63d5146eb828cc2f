"""The dataset contract between stages: immutable Parquet shards plus `_manifest.json`.

A published dataset version lives in ``<root>/datasets/<stage>/<fingerprint>/``: its
``_manifest.json`` and views, each a directory holding nothing but zstd Parquet shards (so DuckDB,
pyarrow and `datasets.load_dataset("parquet", data_dir=...)` open a view unchanged):

* ``data/``     the output rows (the directory a user opens in DuckDB, pyarrow or `datasets`);
* ``rejects/``  every input row the stage did not pass on, with the rule and measured value;
* any extra view a stage needs (``docs/`` token lists, ``index/`` dedup state, ...).

Writes are atomic: everything is written under ``<root>/datasets/<stage>/.staging/``, the
manifest last, and one ``rename`` publishes the version. Readers only ever see directories whose
name is a fingerprint and which contain ``_manifest.json``.

A root may be an object-store URL (``s3://bucket/prefix``, see `storage.py`). Staging then stays
on local disk (in the root's local mirror) and publishing uploads every file of the version
under ``<prefix>/datasets/<stage>/<fingerprint>/``, the manifest last: an object store has no
rename, so the manifest's existence is what publishes. A prefix without a manifest (a crashed
upload) is never read. Readers fetch a published version's manifest and small non-shard files
(tokenizer, checkpoint) into the mirror on open, and shards one at a time on first read.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .hashing import sha256_file
from .schema import REJECT_SCHEMA, SCHEMA_VERSION

MANIFEST = "_manifest.json"
DATA_VIEW = "data"
REJECTS_VIEW = "rejects"
STAGING = ".staging"
COMPRESSION = "zstd"
DEFAULT_SHARD_ROWS = 50_000
DEFAULT_ROW_GROUP_ROWS = 8_192
# A document longer than this is cut in the rejects view; the full text stays in its source file.
REJECT_TEXT_LIMIT = 4_096


@dataclass
class ShardInfo:
    file: str
    rows: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


class ShardWriter:
    """Streams Arrow tables into ``<prefix>-NNNN.parquet`` shards, rolling over at ``max_rows``.

    No file is created until the first row arrives, so a unit of work that yields nothing leaves
    nothing behind. Output bytes depend only on the rows written, which keeps runs byte-identical.
    """

    def __init__(
        self,
        directory: str | Path,
        schema: pa.Schema,
        prefix: str = "part",
        max_rows: int = DEFAULT_SHARD_ROWS,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    ):
        self.directory = Path(directory)
        self.schema = schema
        self.prefix = prefix
        self.max_rows = max_rows
        self.row_group_rows = row_group_rows
        self.shards: list[ShardInfo] = []
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards) + self._rows + self._pending_rows

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
        offset = 0
        while offset < table.num_rows:
            room = self.max_rows - self._rows - self._pending_rows
            piece = table.slice(offset, room)
            self._pending.append(piece)
            self._pending_rows += piece.num_rows
            offset += piece.num_rows
            if self._pending_rows >= self.row_group_rows:
                self._flush()
            if self._rows + self._pending_rows >= self.max_rows:
                self._roll()

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.write(pa.Table.from_pylist(rows, schema=self.schema))

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / f"{self.prefix}-{len(self.shards):04d}.parquet"
            self._writer = pq.ParquetWriter(
                self._path, self.schema, compression=COMPRESSION, write_statistics=True
            )
        table = pa.concat_tables(self._pending)
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self._rows += table.num_rows
        self._pending, self._pending_rows = [], 0

    def _roll(self) -> None:
        self._flush()
        if self._writer is None:
            return
        self._writer.close()
        assert self._path is not None
        self.shards.append(
            ShardInfo(self._path.name, self._rows, self._path.stat().st_size, sha256_file(self._path))
        )
        self._writer, self._path, self._rows = None, None, 0

    def close(self) -> list[ShardInfo]:
        self._roll()
        return self.shards


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> None:
    path = Path(directory) / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def describe_shards(directory: str | Path) -> list[ShardInfo]:
    """Shard entries for every Parquet file in a view directory, sorted by name."""
    out = []
    for p in sorted(Path(directory).glob("*.parquet")):
        out.append(ShardInfo(p.name, pq.ParquetFile(p).metadata.num_rows, p.stat().st_size, sha256_file(p)))
    return out


def ensure_nonempty(directory: str | Path, schema: pa.Schema) -> None:
    """An empty view still holds one empty shard, so `read_parquet('view/*.parquet')` works."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("*.parquet")):
        pq.write_table(schema.empty_table(), directory / "part-empty.parquet", compression=COMPRESSION)


class Staging:
    """A dataset version being written. Nothing in it is visible until :meth:`publish`."""

    def __init__(self, root: str | Path, stage: str, fingerprint: str):
        self.root = Path(root)
        self.stage = stage
        self.fingerprint = fingerprint
        self.final = version_dir(self.root, stage, fingerprint)
        self.dir = staging_base(self.root, stage) / f"{fingerprint}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)

    def view(self, name: str) -> Path:
        p = self.dir / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def publish(self, manifest: dict[str, Any], views: dict[str, pa.Schema]) -> Dataset:
        """Describe every view's shards in the manifest, write it last, rename the version into place."""
        manifest = dict(manifest)
        view_entries = {}
        for name, schema in views.items():
            d = self.view(name)
            ensure_nonempty(d, schema)
            shards = describe_shards(d)
            view_entries[name] = {
                "shards": [s.as_dict() for s in shards],
                "rows": sum(s.rows for s in shards),
                "bytes": sum(s.bytes for s in shards),
            }
        manifest["views"] = view_entries
        manifest["shards"] = view_entries[DATA_VIEW]["shards"]
        write_manifest(self.dir, manifest)
        if storage.url_of(self.final):
            upload_version(self.dir, self.final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.dir, self.final)
        except OSError:
            # Someone published the same fingerprint first; their bytes equal ours.
            if not is_published(self.final):
                raise
            shutil.rmtree(self.dir, ignore_errors=True)
        return Dataset(self.final)

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def version_dir(root: str | Path, stage: str, fingerprint: str) -> Path:
    return storage.local_path(root) / "datasets" / stage / fingerprint


def is_published(path: str | Path) -> bool:
    """Whether a version directory holds a manifest (for a store mirror: the store's, fetched)."""
    path = storage.local_path(path)
    if (path / MANIFEST).is_file():
        return True
    return storage.url_of(path) is not None and fetch_version(path)


def upload_version(staged: Path, final: Path) -> None:
    """Copy a staged version to its store prefix: every file, then the manifest last."""
    files = sorted(p for p in staged.rglob("*") if p.is_file() and p.name != MANIFEST)
    for p in files:
        storage.upload(p, final / p.relative_to(staged))
    storage.upload(staged / MANIFEST, final / MANIFEST)


def fetch_version(path: Path) -> bool:
    """Mirror a published store version locally: its non-shard files, then its manifest last.

    False when the store holds no manifest there (nothing published, or an upload that did not
    finish). Shards are left for :meth:`Dataset.shard_path` to fetch when first read.
    """
    remote_manifest = path / MANIFEST
    if not storage.remote_exists(remote_manifest):
        return False
    text = storage.remote_read(remote_manifest).decode()
    manifest = json.loads(text)
    shards = {f"{view}/{s['file']}" for view, e in manifest["views"].items() for s in e["shards"]}
    for rel in storage.remote_files(path):
        if rel != MANIFEST and rel not in shards:
            storage.fetch(path / rel)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{MANIFEST}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(text)
    os.replace(tmp, path / MANIFEST)
    return True


def staging_base(root: str | Path, stage: str) -> Path:
    """Where a stage's versions are written before they are published."""
    return storage.local_path(root) / "datasets" / stage / STAGING


def clean_staging(root: str | Path, stage: str, keep: str | None = None) -> int:
    """Remove staging leftovers no live writer holds, except version ``keep``'s. Returns how many.

    A writer holds a directory named ``<fp>-<pid>-<uuid>`` while that pid lives, and one named
    ``<fp>`` (a resumable writer, see `resume.py`) while it holds ``<fp>.lock``.
    """
    base = staging_base(root, stage)
    removed = 0
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        if keep and p.name.startswith(keep):
            continue
        if p.suffix == ".lock":
            if not (base / p.stem).exists():
                _drop_lock_unless_held(p)  # a lock left with no directory
            continue
        if not p.is_dir():
            continue
        parts = p.name.rsplit("-", 2)
        legacy = len(parts) == 3 and parts[1].isdigit()
        if legacy and _pid_alive(int(parts[1])):
            continue
        lock = base / f"{parts[0] if legacy else p.name}.lock"
        if lock.exists() and not _drop_lock_unless_held(lock):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed += 1
    return removed


def try_lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` (created if missing) holding our pid, or None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _drop_lock_unless_held(path: Path) -> bool:
    """Delete a lock file nobody holds; False when a live process holds it."""
    fd = try_lock(path)
    if fd is None:
        return False
    path.unlink(missing_ok=True)
    os.close(fd)
    return True


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        return cls(path)

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

    def shard_path(self, index: int, view: str = DATA_VIEW) -> Path:
        """The local file of one shard, fetched from the store on first use."""
        return self._local(view, self._shards(view)[index])

    def shard_paths(self, view: str = DATA_VIEW) -> list[Path]:
        """Local files of every shard of a view (all fetched from a store: prefer `shard_path`)."""
        return [self._local(view, s) for s in self._shards(view)]

    def shard_file(self, view: str, name: str) -> Path | None:
        """The local file of the view's shard called ``name``, or None if the view has none such."""
        for s in self._shards(view):
            if s["file"] == name:
                return self._local(view, s)
        return None

    def _local(self, view: str, shard: dict[str, Any]) -> Path:
        p = self.path / view / shard["file"]
        if p.is_file() or storage.url_of(p) is None:
            return p
        storage.fetch(p)
        if p.stat().st_size != shard["bytes"] or sha256_file(p) != shard["sha256"]:
            p.unlink(missing_ok=True)
            raise ValueError(f"{storage.display(p)}: the fetched shard does not match its manifest")
        return p

    @property
    def schema(self) -> pa.Schema:
        return pq.read_schema(self.shard_path(0))

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
        """Check every shard's size and sha256 against the manifest."""
        for view, entry in self.manifest["views"].items():
            for s in entry["shards"]:
                p = self._local(view, s)
                if p.stat().st_size != s["bytes"] or sha256_file(p) != s["sha256"]:
                    raise ValueError(f"{p}: does not match its manifest")


def reject_rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rejects as an Arrow table, texts cut to REJECT_TEXT_LIMIT characters."""
    for r in rows:
        t = r.get("text")
        if isinstance(t, str) and len(t) > REJECT_TEXT_LIMIT:
            r["text"] = t[:REJECT_TEXT_LIMIT]
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


def manifest_header(stage: str, fp: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "stage": stage, "fingerprint": fp}
