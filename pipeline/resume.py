"""Resuming a crashed stage run from the units it had finished, and one writer per version.

A stage run stages its output in ``<root>/datasets/<stage>/.staging/<fingerprint>/``: the name
depends only on what is being computed, so a re-run after a crash (killed worker, lost node,
Ctrl-C) finds the shards of every unit that had completed. Each finished unit leaves a marker,
``_units/<phase>/<key>.json``, holding its result; on the re-run such a unit is not executed
again and its result is read back. A unit that was cut off midway has no marker: it runs again
and overwrites its own partial shards (units name their shards deterministically).

While a run holds a version's staging directory it holds an exclusive lock on
``<fingerprint>.lock`` beside it, so a second process asked for the same version at the same
time fails at once with a clear message instead of interleaving shards. Staging directories of
other fingerprints that no live process holds are removed when the stage next runs
(`dataset.clean_staging`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .dataset import Staging, staging_base, try_lock, version_dir
from .errors import TokenmillError

UNITS_DIR = "_units"


class VersionBusy(TokenmillError):
    """Another live process is writing the same dataset version."""


class ResumableStaging(Staging):
    """A staging directory named by fingerprint, locked for one writer, kept after a failure."""

    def __init__(self, root: str | Path, stage: str, fingerprint: str):
        self.root = Path(root)
        self.stage = stage
        self.fingerprint = fingerprint
        self.final = version_dir(self.root, stage, fingerprint)
        base = staging_base(self.root, stage)
        base.mkdir(parents=True, exist_ok=True)
        self._lock_path = base / f"{fingerprint}.lock"
        self._lock = try_lock(self._lock_path)
        if self._lock is None:
            holder = _lock_holder(self._lock_path)
            raise VersionBusy(
                f"{stage} version {fingerprint} is being written by another process"
                f"{f' (pid {holder})' if holder else ''}; wait for it to finish"
            )
        self.dir = base / fingerprint
        self.resumed_units = (
            sum(1 for _ in (self.dir / UNITS_DIR).rglob("*.json")) if self.dir.is_dir() else 0
        )
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def units_dir(self) -> Path:
        return self.dir / UNITS_DIR

    def publish(self, manifest: dict[str, Any], views: dict[str, Any]):
        # The markers are bookkeeping, not part of the dataset.
        shutil.rmtree(self.units_dir, ignore_errors=True)
        try:
            dataset = super().publish(manifest, views)
            self._lock_path.unlink(missing_ok=True)
            return dataset
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


def unit_key(phase: str, unit: Any) -> str:
    """A stable name for one unit of a phase (its plan is deterministic, so is its repr)."""
    return hashlib.sha256(f"{phase}\x00{unit!r}".encode()).hexdigest()[:24]


def run_unit_resumable(units_dir: Path, phase: str, fn: Callable[[Any], Any], unit: Any) -> Any:
    """Run one unit unless a previous run finished it; record its result when it finishes."""
    marker = units_dir / phase / f"{unit_key(phase, unit)}.json"
    if marker.is_file():
        try:
            return json.loads(marker.read_text())["result"]
        except (OSError, ValueError, KeyError):
            pass  # a torn marker: run the unit again
    result = fn(unit)
    _write_marker(marker, result)
    return result


def _write_marker(marker: Path, result: Any) -> None:
    try:
        text = json.dumps({"result": result}, sort_keys=True)
    except (TypeError, ValueError):
        return  # not JSON-able: this unit simply reruns after a crash
    if json.loads(text)["result"] != result:
        return  # would not read back identical (tuples, non-str keys): rerun instead
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, marker)


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
