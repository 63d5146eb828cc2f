"""Where the dedup stage keeps its working files, and how documents are addressed across versions.

Every document has an ``ord``: ``generation << 52 | input shard << 32 | row``. Generation g is
the g-th dedup version of the series (the oldest is 0; the run in progress is the newest), so
ordering by ord puts documents an earlier version accepted before new ones, and new ones in
input order. Each published version keeps an ``index`` view (the signature rows of the
documents it kept, with ords local to that version) that later versions search.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, overload

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..dataset import Dataset
from ..errors import ConfigError
from ..stage import StageContext

GEN_SHIFT, SHARD_SHIFT = 52, 32
LOCAL_MASK = (1 << GEN_SHIFT) - 1
ROW_MASK = (1 << SHARD_SHIFT) - 1
MAX_GENERATIONS = 1 << (63 - GEN_SHIFT)
INDEX_VIEW = "index"
WORK = "work"
_DatabaseKey = tuple[str, str, int]
# Futures, so a database can be opened ahead in a thread (see open_database_ahead).
_DATABASES: dict[_DatabaseKey, Future[duckdb.DuckDBPyConnection]] = {}
_DATABASES_KEPT = 4
_DATABASES_LOCK = threading.Lock()


def _open_database(key: _DatabaseKey) -> duckdb.DuckDBPyConnection:
    temp_directory, memory_limit, threads = key
    config: dict[str, Any] = {
        "temp_directory": temp_directory,
        "memory_limit": memory_limit,
        "preserve_insertion_order": False,
    }
    if threads:
        config["threads"] = threads
    return duckdb.connect(config=config)


def _database(key: _DatabaseKey, ahead: bool) -> Future[duckdb.DuckDBPyConnection]:
    with _DATABASES_LOCK:
        db = _DATABASES.get(key)
        if db is None or (db.done() and db.exception() is not None):  # a failed open is tried again
            db = Future()
            if ahead:
                threading.Thread(target=_resolve, args=(db, key), name="dedup-duckdb-open").start()
            else:
                _resolve(db, key)
            _DATABASES[key] = db
            while len(_DATABASES) > _DATABASES_KEPT:  # one per recent run; open cursors keep theirs alive
                _DATABASES.pop(next(iter(_DATABASES)))
        return db


def _resolve(db: Future[duckdb.DuckDBPyConnection], key: _DatabaseKey) -> None:
    try:
        db.set_result(_open_database(key))
    except BaseException as e:  # handed to whoever waits for the database
        db.set_exception(e)


def open_database_ahead(temp_directory: Path, memory_limit: str, threads: int) -> None:
    """Start opening a run's database in a thread, so its cost (tens of milliseconds, most of a
    small run's fixed cost; DuckDB releases the GIL meanwhile) overlaps the work before the first
    query instead of adding to it."""
    _database((str(temp_directory), memory_limit, threads), ahead=True)


def _cursor(temp_directory: Path, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    """A fresh connection to this process's in-memory database for these settings.

    Opening a database costs tens of milliseconds and a cursor on it next to nothing, so the
    units of one run share a database; each unit's cursor keeps its TEMP views and tables apart.
    """
    return _database((str(temp_directory), memory_limit, threads), ahead=False).result().cursor()


def close_databases(temp_directory: Path) -> None:
    """Close the database of a finished run: DuckDB keeps its buffers until then, and the
    stages after dedup (in the same process) should not carry them."""
    with _DATABASES_LOCK:
        dbs = [_DATABASES.pop(k) for k in [k for k in _DATABASES if k[0] == str(temp_directory)]]
    for db in dbs:
        if db.exception() is None:  # waits for a database still being opened ahead
            db.result().close()


@overload
def make_ord(gen: int, shard: int, row: int) -> int: ...
@overload
def make_ord(gen: int, shard: int, row: np.ndarray) -> np.ndarray: ...
def make_ord(gen: int, shard: int, row: np.ndarray | int) -> np.ndarray | int:
    return (gen << GEN_SHIFT) | (shard << SHARD_SHIFT) | row


def split_ord(ord_: int) -> tuple[int, int, int]:
    return ord_ >> GEN_SHIFT, (ord_ & LOCAL_MASK) >> SHARD_SHIFT, ord_ & ROW_MASK


def signature_schema(bands: int, num_perm: int) -> pa.Schema:
    """The signature rows: in working files (global ords) and in the index view (local ords)."""
    return pa.schema(
        [
            pa.field("ord", pa.int64(), nullable=False),
            pa.field("id", pa.string(), nullable=False),
            pa.field("h1", pa.uint64(), nullable=False),  # 128-bit hash of the folded text
            pa.field("h2", pa.uint64(), nullable=False),
            *[pa.field(band_column(b), pa.uint64()) for b in range(bands)],  # null: no shingles
            pa.field("signature", pa.list_(pa.uint32(), num_perm), nullable=False),  # all ones: no shingles
        ]
    )


def spill_directory(staging_dir: Path) -> Path:
    """Where a run's DuckDB database spills (in its working files, so it goes with them)."""
    return staging_dir / WORK / "duckdb-tmp"


def band_column(b: int) -> str:
    return f"b{b:03d}"


class Workspace:
    """Paths and lookups of one dedup run; cheap to build inside any unit of work."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.dir = ctx.staging_dir / WORK
        parent = ctx.parent_dataset()
        self.chain: list[Dataset] = parent.chain() if parent else []
        self.gen = len(self.chain)
        if self.gen >= MAX_GENERATIONS:
            raise ConfigError(
                f"dedup series has {self.gen} versions; at most {MAX_GENERATIONS - 1} are supported"
            )
        self.new_base = self.gen << GEN_SHIFT
        self.input = ctx.input()

    # -- files ---------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        """A working file; ``path(folder, name)`` is ``<folder>-<name>``: one flat directory,
        because removing directories costs milliseconds each on some file systems."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / "-".join(parts)

    def sig_path(self, shard: int) -> Path:
        return self.path("sigs", f"sig-{shard:05d}.parquet")

    def shingle_path(self, shard: int) -> Path:
        """Every document's shingle hashes, flat uint64 in row order (exact verification only)."""
        return self.path("shingles", f"shingles-{shard:05d}.u64")

    def shingle_offsets_path(self, shard: int) -> Path:
        """Where each row's shingles start in :meth:`shingle_path`'s file, and where the last ends."""
        return self.path("shingles", f"offsets-{shard:05d}.npy")

    def lines_path(self, shard: int) -> Path:
        return self.path("lines", f"lines-{shard:05d}.parquet")

    def files(self, folder: str) -> list[str]:
        return sorted(str(p) for p in self.dir.glob(f"{folder}-*.parquet"))

    def input_for(self, gen: int) -> Dataset:
        """The ingest version whose shards generation `gen`'s ords point into."""
        if gen == self.gen:
            return self.input
        d = self.chain[gen]
        return Dataset(d.root / d.manifest["inputs"][0]["path"])

    def signature_file(self, gen: int, shard: int) -> Path | None:
        if gen == self.gen:
            return self.sig_path(shard)
        return self.chain[gen].shard_file(INDEX_VIEW, f"part-{shard:05d}-0000.parquet")

    # -- DuckDB --------------------------------------------------------------------------------
    @property
    def duckdb_tmp(self) -> Path:
        return spill_directory(self.ctx.staging_dir)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection with views ``cur`` (this run's signatures), ``par`` (what earlier
        versions kept, ords made global) and ``allsigs`` (both)."""
        cfg = self.ctx.config
        # DuckDB makes its temp directory (not its parents) when it first spills; small runs never do.
        self.dir.mkdir(parents=True, exist_ok=True)
        con = _cursor(self.duckdb_tmp, cfg.duckdb_memory_limit, cfg.duckdb_threads)
        con.execute(f"CREATE TEMP VIEW cur AS SELECT * FROM read_parquet({self.files('sigs')!r})")
        parts = []
        for g, d in enumerate(self.chain):
            files = [str(p) for p in d.shard_paths(INDEX_VIEW)]
            parts.append(
                f"SELECT * REPLACE (ord | ({g}::BIGINT << {GEN_SHIFT}) AS ord) FROM read_parquet({files!r})"
            )
        con.execute(f"CREATE TEMP VIEW allsigs AS {' UNION ALL '.join(['SELECT * FROM cur', *parts])}")
        return con

    def view(self, con: duckdb.DuckDBPyConnection, name: str, folder: str, empty: str) -> None:
        """A view over a working folder's files, or an empty relation of the given columns."""
        files = self.files(folder)
        src = f"read_parquet({files!r})" if files else f"(SELECT {empty} LIMIT 0)"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {src}")

    # -- lookups by ord ------------------------------------------------------------------------
    def _by_file(self, ords: np.ndarray) -> Iterable[tuple[int, int, np.ndarray]]:
        keys = ords >> SHARD_SHIFT  # generation and shard together
        for key in np.unique(keys):
            yield (
                int(key) >> (GEN_SHIFT - SHARD_SHIFT),
                int(key) & ((1 << (GEN_SHIFT - SHARD_SHIFT)) - 1),
                np.flatnonzero(keys == key),
            )

    def signatures(self, ords: np.ndarray) -> np.ndarray:
        """Signature rows of the given documents (any generation), in the order asked."""
        out = np.zeros((len(ords), self.ctx.config.num_perm), dtype=np.uint32)
        for gen, shard, pos in self._by_file(ords):
            path = self.signature_file(gen, shard)
            t = pq.read_table(path, columns=["ord", "signature"])
            have = t.column("ord").to_numpy() & LOCAL_MASK
            at = np.searchsorted(have, ords[pos] & LOCAL_MASK)
            sig = t.column("signature").combine_chunks()
            out[pos] = sig.values.to_numpy().reshape(len(t), -1)[at]
        return out

    def shingles(self, ords: np.ndarray) -> list[np.ndarray]:
        """Shingle hashes of documents of this run, in the order asked: only their bytes are read."""
        out: list[np.ndarray] = [np.zeros(0, np.uint64)] * len(ords)
        for gen, shard, pos in self._by_file(ords):
            if gen != self.gen:
                raise ValueError(f"shingles are kept for generation {self.gen} only, not {gen}")
            offsets = np.load(self.shingle_offsets_path(shard))
            with self.shingle_path(shard).open("rb") as f:
                for p, row in zip(pos.tolist(), (ords[pos] & ROW_MASK).tolist(), strict=True):
                    lo, hi = int(offsets[row]), int(offsets[row + 1])
                    f.seek(8 * lo)
                    out[p] = np.fromfile(f, dtype=np.uint64, count=hi - lo)
        return out

    def texts(self, ords: np.ndarray) -> list[str]:
        """Original texts of the given documents (any generation), in the order asked."""
        out: list[str] = [""] * len(ords)
        for gen, shard, pos in self._by_file(ords):
            path = self.input_for(gen).shard_path(shard)
            col = pq.read_table(path, columns=["text"]).column("text")
            for p, t in zip(pos, col.take(pa.array(ords[pos] & ROW_MASK)).to_pylist(), strict=True):
                out[p] = t
        return out
