"""Texts of ingest-style sources, read outside the ingest stage (classifier training sets, ...).

The same sources as ``ingest.sources`` (any format: files, directories, globs, HF, the built-in
corpus), mapped to documents by the same rules (``text_field``, normalisation, empty texts
refused). A record that cannot be read is counted by reason, never silently dropped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import xxhash

from ..hashing import canonical_json, sha256_bytes
from ..sources import Problem, Skipped, take_repairs
from ..sources.html import to_text
from .config import IngestConfig, SourceConfig

DEFAULT_MAX_CHARS = 1_000_000


@dataclass
class SourceTexts:
    texts: list[str]
    read: int = 0  # records read: texts, problems, and texts left out of the sample
    problems: dict[str, int] = field(default_factory=dict)  # reason -> records that hold no text
    available: int = 0  # texts the sources hold; more than len(texts) when a sample was taken


def sources_config(sources: list[SourceConfig]) -> IngestConfig:
    return IngestConfig(sources=sources)


def sources_digest(sources: list[SourceConfig]) -> dict[str, Any]:
    """What the sources hold: every unit's key and content hash, and their combined fingerprint."""
    from .stage import list_units

    units = list_units(sources_config(sources), {})
    keyed = sorted((u["key"], u["sha256"]) for u in units)
    return {"units": len(keyed), "sha256": sha256_bytes(canonical_json(keyed).encode())}


def read_texts(
    sources: list[SourceConfig], limit: int | None = None, seed: int = 0, max_chars: int = DEFAULT_MAX_CHARS
) -> SourceTexts:
    """The texts of ``sources``; past ``limit`` texts, a sample of ``limit`` spread over all of them.

    The sample is the ``limit`` texts with the smallest seeded hash of their content (a bottom-k
    sample: uniform, the same on every run, memory bounded by ``limit``), in hash order.
    """
    from .stage import list_units, to_document, unit_items

    cfg = sources_config(sources)
    out = SourceTexts([])
    heap: list[tuple[int, str]] = []  # max-heap by hash (negated) of the sample so far
    for unit in list_units(cfg, {}):
        src = cfg.sources[unit["source"]]
        for _, item in unit_items(unit, cfg):
            if isinstance(item, Skipped):  # never a document (a WARC request record, an image)
                continue
            take_repairs()
            out.read += 1
            if not isinstance(item, Problem) and "html" in item:  # a web page: its main text
                page = to_text(item, src.extractor)
                item = page if isinstance(page, Problem) else page[0]
            doc = item if isinstance(item, Problem) else to_document(item, src, max_chars)
            if isinstance(doc, Problem):
                out.problems[doc.reason] = out.problems.get(doc.reason, 0) + 1
                continue
            out.available += 1
            text = doc["text"]
            h = xxhash.xxh3_64_intdigest(text.encode(), seed)
            if limit is None or len(heap) < limit:
                heapq.heappush(heap, (-h, text))
            elif -heap[0][0] > h:
                heapq.heapreplace(heap, (-h, text))
    out.texts = [t for _, t in sorted(heap, key=lambda x: -x[0])]
    return out
