"""A dataset version being written: staged by fingerprint, one writer at a time, resumable.

A stage run writes its output in ``<root>/datasets/<stage>/.staging/<fingerprint>/``: the name
depends only on what is being computed, so a re-run after a crash (killed worker, lost node,
Ctrl-C) finds the shards of every unit that had completed. Each finished unit leaves a marker,
``_unit.<phase>.<key>.json`` beside the views, holding its result; on the re-run such a unit is
not executed again and its result is read back. The markers are plain files in the version's own
directory, deleted one by one at publish: removing a directory costs milliseconds on some file
systems (ext4 mounted with ``discard``), a file a tenth of that. A unit that was cut off midway has no marker: it runs again
and overwrites its own partial shards (units name their shards deterministically).

While a writer holds a version's staging directory it holds an exclusive lock on
``.locks/<fingerprint>.lock``, so a second process asked for the same version at the same time
fails at once with a clear message instead of interleaving shards. Staging directories that no
live writer holds are removed when the stage next runs (:func:`clean_staging`).

Nothing in staging is visible to readers: :meth:`Staging.publish` describes every view's shards
in the manifest, writes the manifest last and publishes the version with one rename (on an
object store: uploads it, manifest last).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import storage
from ..errors import TokenmillError
from .layout import DATA_VIEW, locks_base, staging_base, version_dir
from .reader import Dataset, note_renamed
from .store import is_published, upload_version
from .writer import describe_shards, ensure_nonempty, write_manifest

UNIT_MARKER = "_unit.{phase}.{key}.json"


class VersionBusy(TokenmillError):
    """Another live process is writing the same dataset version."""


class Staging:
    """A version being written: named by fingerprint, locked for one writer, kept after a failure."""

    def __init__(self, root: str | Path, stage: str, fingerprint: str):
        self.root = Path(root)
        self.stage = stage
        self.fingerprint = fingerprint
        self.final = version_dir(self.root, stage, fingerprint)
        locks = locks_base(self.root, stage)
        locks.mkdir(parents=True, exist_ok=True)
        self._lock_path = locks / f"{fingerprint}.lock"
        self._lock = try_lock(self._lock_path)
        if self._lock is None:
            holder = _lock_holder(self._lock_path)
            raise VersionBusy(
                f"{stage} version {fingerprint} is being written by another process"
                f"{f' (pid {holder})' if holder else ''}; wait for it to finish"
            )
        self.dir = staging_base(self.root, stage) / fingerprint
        self.resumed_units = len(unit_markers(self.dir)) if self.dir.is_dir() else 0
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def units_dir(self) -> Path:
        return self.dir

    def view(self, name: str) -> Path:
        p = self.dir / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def publish(self, manifest: dict[str, Any], views: dict[str, pa.Schema]) -> Dataset:
        """Describe every view's shards in the manifest, write it last, rename the version into place."""
        try:
            # Bookkeeping, not part of the dataset: the markers and any torn one's temporary file.
            for marker in self.dir.glob(UNIT_MARKER.split("{")[0] + "*"):
                marker.unlink(missing_ok=True)
            manifest = dict(manifest)
            entries = {}
            described: dict[Path, os.stat_result] = {}
            for name, schema in views.items():
                d = self.view(name)
                ensure_nonempty(d, schema)
                shards = describe_shards(d)
                described.update((Path(name) / s.file, os.stat(d / s.file)) for s in shards)
                entries[name] = {
                    "shards": [s.as_dict() for s in shards],
                    "rows": sum(s.rows for s in shards),
                    "bytes": sum(s.bytes for s in shards),
                }
            manifest["views"] = entries
            manifest["shards"] = entries[DATA_VIEW]["shards"]
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
            else:
                for rel, st in described.items():
                    note_renamed(self.dir / rel, self.final / rel, st)
            # Closed before it is unlinked: freeing an unlinked file at its last close costs
            # milliseconds on some file systems. A writer taking the lock in between finds the
            # version published, like one that arrives after it.
            self.release()
            self._lock_path.unlink(missing_ok=True)
            return Dataset(self.final)
        finally:
            self.release()

    def abort(self) -> None:
        """Keep the finished units for the next run; only give up the lock."""
        self.release()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def clean_staging(root: str | Path, stage: str, keep: str | None = None) -> int:
    """Remove staging leftovers no live writer holds, except version ``keep``'s. Returns how many."""
    base, locks = staging_base(root, stage), locks_base(root, stage)
    removed = 0
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        if p.name == keep or not p.is_dir():
            continue
        lock = locks / f"{p.name}.lock"
        if lock.exists() and not _drop_lock_unless_held(lock):
            continue  # a live writer holds it
        shutil.rmtree(p, ignore_errors=True)
        removed += 1
    for lock in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
        if lock.stem != keep and not (base / lock.stem).exists():
            _drop_lock_unless_held(lock)  # a lock left with no directory
    return removed


# -- one writer per version -----------------------------------------------------------------------
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


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# -- finished units ---------------------------------------------------------------------------------
def unit_key(phase: str, unit: Any) -> str:
    """A stable name for one unit of a phase (its plan is deterministic, so is its repr)."""
    return hashlib.sha256(f"{phase}\x00{unit!r}".encode()).hexdigest()[:24]


def unit_markers(directory: Path) -> list[Path]:
    """The finished-unit markers in a version's staging directory."""
    return sorted(directory.glob(UNIT_MARKER.format(phase="*", key="*")))


def run_unit_resumable(units_dir: Path, phase: str, fn: Callable[[Any], Any], unit: Any) -> Any:
    """Run one unit unless a previous run finished it; record its result when it finishes.

    A unit's result must be plain JSON data (dicts with string keys, lists, strings, numbers,
    booleans, None): that is what a resumed run reads back, so a fresh run returns exactly the
    same. Anything else (a tuple, a numpy number) is a programming error, raised here rather
    than discovered as a phase that silently never resumes.
    """
    marker = units_dir / UNIT_MARKER.format(phase=phase, key=unit_key(phase, unit))
    if marker.is_file():
        try:
            return json.loads(marker.read_text())["result"]
        except (OSError, ValueError, KeyError):
            pass  # a torn marker: run the unit again
    result = fn(unit)
    try:
        text = json.dumps({"result": result}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"phase {phase}: a unit result must be plain JSON data ({e})") from e
    if json.loads(text)["result"] != result:
        raise TypeError(
            f"phase {phase}: a unit result must be plain JSON data (tuples, non-string keys "
            "and the like would read back differently on resume)"
        )
    units_dir.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, marker)
    return result
