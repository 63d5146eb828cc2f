"""Stable hashes: content ids, file digests and dataset fingerprints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import xxhash


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal configs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def text_id(text: str) -> str:
    """Content id for documents without a source id: 128-bit xxhash of the UTF-8 text."""
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def fingerprint(**parts: Any) -> str:
    """Fingerprint of a dataset: hash of the stage name, config, inputs and code version."""
    return sha256_bytes(canonical_json(parts).encode("utf-8"))[:32]
