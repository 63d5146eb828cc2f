"""Reading a published dataset version: its manifest, views and shards, streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import storage
from ..hashing import sha256_file
from .layout import DATA_VIEW, MANIFEST
from .store import is_published


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
