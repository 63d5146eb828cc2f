"""Where source records come from: a located source, the files it names, and their digests.

Ingest, labeled and every other stage that reads raw files share these rules: a ``path`` is a
file, a directory (walked recursively, hidden and ``_``-prefixed names skipped) or a glob; each
file is one unit of work identified by its absolute path and the sha256 of its bytes (reused
from an earlier run when its size and mtime are unchanged, so incremental runs hash only what
changed); a Hugging Face source is one unit identified by its config and local files.

A ``path`` may also be an fsspec URL (``s3://bucket/crawl/*.warc.gz``, ``gs://…``, a prefix or
one object), listed and opened through the data root's filesystem settings
(:func:`pipeline.storage.filesystem`: ``TOKENMILL_STORAGE_OPTIONS`` and the usual credentials).
A remote file is identified without reading it, by what the store says about its version: its
ETag, size and modification time (the unit's ``sha256`` is the digest of those); a file whose
store lists none of them is hashed by streaming it once.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

from pydantic import BaseModel, model_validator

from .. import storage
from ..errors import ConfigError
from ..hashing import canonical_json, sha256_bytes, sha256_file

_GLOB = ("*", "?", "[")
REMOTE_BLOCK = 8 << 20  # read-ahead of a remote source file


class LocatedSource(BaseModel):
    """What every source config shares: a location checked for its format, and a label.

    Subclasses narrow ``format`` to the formats they read and describe the fields.
    """

    default_label: ClassVar[str] = "default"

    path: str | None = None
    format: str = "auto"
    name: str | None = None
    hf_name: str | None = None

    @model_validator(mode="after")
    def _needs_location(self) -> LocatedSource:
        if self.format == "default":
            return self
        if self.format == "hf":
            if not self.hf_name:
                raise ValueError("a source with format 'hf' needs hf_name")
            return self
        if not self.path:
            raise ValueError(f"a source with format {self.format!r} needs a path")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.format == "default":
            return self.default_label
        if self.format == "hf":
            return f"hf:{self.hf_name}"
        return Path(self.path or "source").stem or "source"


def expand_path(spec: str) -> list[Path]:
    """A file, a directory (recursively, hidden files skipped) or a glob, as sorted absolute paths."""
    p = Path(spec).expanduser()
    if p.is_file():
        return [p.resolve()]
    if p.is_dir():
        out = []
        for d, dirs, files in os.walk(p):
            dirs[:] = sorted(x for x in dirs if not x.startswith((".", "_")))
            out += [Path(d, f).resolve() for f in files if not f.startswith((".", "_"))]
        return sorted(out)
    return sorted(Path(x).resolve() for x in glob.glob(spec, recursive=True) if Path(x).is_file())


def open_raw(location: str | Path) -> IO[bytes]:
    """A local file or an fsspec URL opened for reading bytes (buffered, streamed)."""
    if not storage.is_url(str(location)):
        return open(location, "rb")
    fs, key = storage.filesystem(str(location))
    return fs.open(key, "rb", block_size=REMOTE_BLOCK)


def size_of(location: str | Path) -> int:
    if not storage.is_url(str(location)):
        return Path(location).stat().st_size
    fs, key = storage.filesystem(str(location))
    return int(fs.size(key))


def expand_url(spec: str) -> dict[str, dict[str, Any]]:
    """The objects an fsspec URL names (one object, a prefix, or a glob) -> the store's info."""
    fs, key = storage.filesystem(spec)
    protocol = spec.split("://", 1)[0]
    fs.invalidate_cache()
    if any(c in key for c in _GLOB):
        found = fs.glob(key, detail=True)
    elif fs.isdir(key):
        found = fs.find(key, detail=True)
    elif fs.exists(key):
        found = {key: fs.info(key)}
    else:
        found = {}
    out = {}
    for k, info in sorted(found.items()):
        name = PurePosixPath(k).name
        if info.get("type", "file") != "file" or name.startswith((".", "_")):
            continue
        out[k if "://" in k else f"{protocol}://{k}"] = info
    return out


def remote_version(url: str, info: dict[str, Any]) -> dict[str, Any]:
    """What identifies a remote object's content without reading it: ETag, size, mtime."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("crc32c")
    mtime = info.get("LastModified") or info.get("last_modified") or info.get("mtime") or info.get("updated")
    version = {"size": info.get("size")}
    if etag:
        version["etag"] = str(etag).strip('"')
    if mtime is not None:
        version["mtime"] = mtime.isoformat() if hasattr(mtime, "isoformat") else str(mtime)
    if "etag" not in version and "mtime" not in version:  # nothing to go by: hash the bytes
        digest = hashlib.sha256()
        with open_raw(url) as f:
            while chunk := f.read(REMOTE_BLOCK):
                digest.update(chunk)
        version["content_sha256"] = digest.hexdigest()
    return version


def _remote_units(
    index: int, spec: str, file_format: Callable[[PurePosixPath], str], what: str
) -> list[dict[str, Any]]:
    objects = expand_url(spec)
    if not objects:
        raise ConfigError(f"{what} {index}: {spec!r} matches no objects")
    units = []
    for url, info in objects.items():
        version = remote_version(url, info)
        units.append(
            {
                "source": index,
                "kind": "file",
                "key": url,
                "path": url,
                "format": file_format(PurePosixPath(url.split("://", 1)[1])),
                "sha256": sha256_bytes(canonical_json(version).encode()),
                **{k: v for k, v in version.items() if k != "content_sha256"},
            }
        )
    return units


def file_units(
    index: int,
    spec: str,
    file_format: Callable[[Any], str],
    known: dict[str, dict[str, Any]] | None = None,
    what: str = "source",
    keep: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """One unit per file of source ``index``: key, path, format and content hash.

    With ``known`` (units of earlier versions by key) a file whose size and mtime are unchanged
    keeps its recorded hash instead of being read again; those units also carry size and mtime.
    A URL ``spec`` lists objects on a store (see the module docstring). ``keep`` picks files by
    name when the spec is a directory or a glob (one file named outright is always kept).
    """
    if storage.is_url(spec):
        units = _remote_units(index, spec, file_format, what)
        if keep is not None:
            units = [u for u in units if u["key"] == spec or keep(u["key"])]
        return units
    files = expand_path(spec)
    if keep is not None and not Path(spec).expanduser().is_file():
        files = [f for f in files if keep(f.name)]
    if not files:
        raise ConfigError(f"{what} {index}: {spec!r} matches no files")
    units = []
    for f in files:
        key = f"file:{f}"
        unit: dict[str, Any] = {"source": index, "kind": "file", "key": key, "path": str(f)}
        unit["format"] = file_format(f)
        if known is None:
            unit["sha256"] = sha256_file(f)
        else:
            st = f.stat()
            prev = known.get(key)
            same = prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns
            unit["sha256"] = prev["sha256"] if same and prev else sha256_file(f)
            unit.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        units.append(unit)
    return units


def tree_digest(path: Path) -> str:
    """The content of a directory: every file's relative path and sha256."""
    parts = [f"{f.relative_to(path)}:{sha256_file(f)}" for f in sorted(path.rglob("*")) if f.is_file()]
    return sha256_bytes("\n".join(parts).encode())


def hf_digest(config: dict[str, Any], data_files: list[str] | None) -> str:
    """A Hugging Face source: its settings and the content of its local data files."""
    files = []
    for spec in data_files or []:
        files += [f"{f}:{sha256_file(f)}" for f in expand_path(spec)]
    return sha256_bytes(canonical_json([config, files]).encode())
