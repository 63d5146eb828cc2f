"""Published versions on an object store: upload with the manifest last, mirror on first read.

An object store has no rename, so the manifest's existence is what publishes: a version is
uploaded file by file and ``_manifest.json`` last, and a prefix without a manifest (a crashed
upload) is never read. Opening a published store version fetches its manifest and small
non-shard files (tokenizer, checkpoint) into the root's local mirror (see `pipeline.storage`);
shards are fetched one at a time when first read.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from .. import storage
from .layout import MANIFEST


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


def cached_shards() -> list[Path]:
    """Published shards fetched into any store mirror under the state dir (the evictable cache).

    A shard is ``…/datasets/<stage>/<fingerprint>/<view>/<file>.parquet`` in a version directory
    that holds its manifest; staging (``.staging``), locks and work files never match.
    """
    base = storage.mirror_base()
    out = []
    for p in base.rglob("*.parquet") if base.is_dir() else []:
        parts = p.relative_to(base).parts
        if len(parts) >= 5 and parts[-5] == "datasets" and not any(x.startswith(".") for x in parts):
            if (p.parent.parent / MANIFEST).is_file():
                out.append(p)
    return out


def evict_cached(keep: Path | None = None) -> list[Path]:
    """Enforce ``TOKENMILL_CACHE_MAX_BYTES`` on the shard cache: least recently used go first."""
    cap = storage.cache_max_bytes()
    if cap is None:
        return []
    return storage.trim_cache(cached_shards(), cap, keep)
