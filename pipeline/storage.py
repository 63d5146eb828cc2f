"""Where a data root lives: a local directory, or an fsspec URL (``s3://bucket/prefix``, ``gs://…``).

Every stage works on local paths: Parquet writers, DuckDB and tokenizers need real files. A
root on an object store is therefore stood for by a *local mirror*, a directory whose path spells
the URL::

    s3://bucket/prefix  <->  <state dir>/stores/s3/bucket/prefix

so any process (a Dask worker on the same host, a rerun tomorrow) maps one to the other with no
registry. The mirror holds what must be local: staging of versions being written, work files,
the DuckDB catalog, and a cache of published files fetched on first use. Published versions
are immutable and named by fingerprint, so a cached file never goes stale; the mirror may be
deleted at any time and is rebuilt from the store.

This module is only the mapping and the file transport (exists, fetch, upload, list); what a
published version is (manifest last, readers trust only manifests) lives in `dataset.py`.

Settings, from the environment so that they reach worker processes unchanged:

* ``TOKENMILL_STATE_DIR``        local state (mirrors); default ``~/.cache/tokenmill``;
* ``TOKENMILL_STORAGE_OPTIONS``  JSON keyword arguments for the fsspec filesystem, e.g.
  ``{"endpoint_url": "http://127.0.0.1:9000"}``; credentials come from the usual places
  (``AWS_ACCESS_KEY_ID``… for s3fs);
* ``TOKENMILL_CACHE_MAX_BYTES``  a size cap on the cached published shards of every mirror under
  the state dir (``50GB``, ``500MiB`` or plain bytes; unset or 0: no cap). After each fetch the
  least recently used shards are deleted until the cache fits; a deleted shard is fetched again
  when next read. Staging, work files and the catalog are never evicted.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "TOKENMILL_STATE_DIR"
OPTIONS_ENV = "TOKENMILL_STORAGE_OPTIONS"
CACHE_MAX_ENV = "TOKENMILL_CACHE_MAX_BYTES"
STORES = "stores"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def is_url(location: str | Path) -> bool:
    """Whether a location names an fsspec store other than the local disk."""
    return isinstance(location, str) and "://" in location and not location.startswith("file://")


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".cache" / "tokenmill").resolve()


def mirror_base() -> Path:
    return state_dir() / STORES


def local_path(location: str | Path) -> Path:
    """The local path standing for a location: itself when local, its mirror path for a URL."""
    if isinstance(location, str) and location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    if not is_url(location):
        return Path(location)
    protocol, rest = str(location).split("://", 1)
    parts = [p for p in rest.split("/") if p]
    if not parts or any(p in {".", ".."} for p in parts):
        raise ValueError(f"{location!r}: a store URL needs a bucket and no '.' or '..' parts")
    return mirror_base().joinpath(protocol, *parts)


def resolve_root(root: str | Path) -> Path:
    """A data root as the absolute local directory the pipeline works in."""
    return local_path(root).absolute()


def url_of(path: str | Path) -> str | None:
    """The store URL a local mirror path stands for; None for a plain local path."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(mirror_base())
    except ValueError:
        return None
    if len(rel.parts) < 2:
        return None
    return f"{rel.parts[0]}://{'/'.join(rel.parts[1:])}"


def display(path: str | Path) -> str:
    """How to show a path to a user: the URL for a mirror path, else the path."""
    return url_of(path) or str(path)


@lru_cache(maxsize=8)
def _filesystem(protocol: str, options: str) -> Any:
    import fsspec

    return fsspec.filesystem(protocol, **json.loads(options))


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of a URL and the path inside it (no protocol)."""
    import fsspec.core

    protocol, _ = fsspec.core.split_protocol(url)
    fs = _filesystem(protocol, os.environ.get(OPTIONS_ENV) or "{}")
    return fs, fs._strip_protocol(url)


def _remote(path: str | Path) -> tuple[Any, str]:
    url = url_of(path)
    if url is None:
        raise ValueError(f"{path}: not under the store mirror {mirror_base()}")
    return filesystem(url)


def remote_exists(path: str | Path) -> bool:
    """Whether the store holds the file a mirror path stands for (asked fresh, never cached)."""
    fs, key = _remote(path)
    fs.invalidate_cache(key.rsplit("/", 1)[0])
    return bool(fs.exists(key))


def remote_read(path: str | Path) -> bytes:
    fs, key = _remote(path)
    return fs.cat_file(key)


def remote_mtime(path: str | Path) -> float:
    fs, key = _remote(path)
    return fs.modified(key).timestamp()


def remote_files(directory: str | Path) -> list[str]:
    """Every file under a mirror directory's store prefix, relative to it, sorted."""
    fs, key = _remote(directory)
    fs.invalidate_cache(key)
    prefix = key.rstrip("/") + "/"
    return sorted(f[len(prefix) :] for f in fs.find(prefix) if f.startswith(prefix))


def remote_glob(directory: str | Path, pattern: str) -> list[Path]:
    """Mirror paths of the store files matching ``pattern`` under a mirror directory."""
    fs, key = _remote(directory)
    fs.invalidate_cache(key)
    prefix = key.rstrip("/") + "/"
    return [Path(directory) / f[len(prefix) :] for f in sorted(fs.glob(prefix + pattern))]


def fetch(path: str | Path) -> Path:
    """Make sure a mirror file is on local disk, downloading it once; returns the local path.

    The download lands in a private temporary name and is renamed into place, so concurrent
    fetches of the same file (threads, worker processes) never see a partial file.
    """
    path = Path(path)
    if path.is_file():
        return path
    fs, key = _remote(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
    try:
        fs.get_file(key, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def upload(local: str | Path, mirror: str | Path) -> None:
    """Copy a local file to the store location of a mirror path (an object PUT: all or nothing)."""
    fs, key = _remote(mirror)
    fs.put_file(str(local), key)


# -- the size cap of the cache of fetched files -------------------------------------------------
def cache_max_bytes() -> int | None:
    """The cache cap from ``TOKENMILL_CACHE_MAX_BYTES``; None when unset or 0 (no cap)."""
    raw = (os.environ.get(CACHE_MAX_ENV) or "").strip()
    if not raw:
        return None
    number = raw.rstrip("BbKkMmGgTtIi ")
    unit = raw[len(number) :].strip().upper()
    try:
        value = int(float(number) * _UNITS[unit])
    except (KeyError, ValueError):
        from .errors import ConfigError

        raise ConfigError(
            f"{CACHE_MAX_ENV}={raw!r}: expected bytes such as 50GB, 500MiB or 1000000"
        ) from None
    return value or None


def touch(path: str | Path) -> None:
    """Mark a cached file as just used (its access time orders the eviction)."""
    try:
        st = os.stat(path)
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))  # mtime kept: it is the file's identity
    except OSError:
        pass


def trim_cache(files: list[Path], cap: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used of ``files`` until they hold at most ``cap`` bytes.

    ``keep`` (the file being handed to a reader) is never deleted. Returns the deleted files.
    """
    entries = []
    for p in files:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        entries.append((st.st_atime_ns, str(p), st.st_size))
    total = sum(size for _, _, size in entries)
    removed = []
    for _, name, size in sorted(entries):
        if total <= cap:
            break
        if keep is not None and name == str(keep):
            continue
        try:
            os.unlink(name)
        except FileNotFoundError:
            continue  # another process evicted it first
        total -= size
        removed.append(Path(name))
    return removed
