"""Where source records come from: a located source, the files it names, and their digests.

Ingest, labeled and every other stage that reads raw files share these rules: a ``path`` is a
file, a directory (walked recursively, hidden and ``_``-prefixed names skipped) or a glob; each
file is one unit of work identified by its absolute path and the sha256 of its bytes (reused
from an earlier run when its size and mtime are unchanged, so incremental runs hash only what
changed); a Hugging Face source is one unit identified by its config and local files.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, model_validator

from ..errors import ConfigError
from ..hashing import canonical_json, sha256_bytes, sha256_file


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


def file_units(
    index: int,
    spec: str,
    file_format: Callable[[Path], str],
    known: dict[str, dict[str, Any]] | None = None,
    what: str = "source",
) -> list[dict[str, Any]]:
    """One unit per file of source ``index``: key, path, format and content hash.

    With ``known`` (units of earlier versions by key) a file whose size and mtime are unchanged
    keeps its recorded hash instead of being read again; those units also carry size and mtime.
    """
    files = expand_path(spec)
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
