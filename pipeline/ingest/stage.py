"""The ingest stage: sources in, canonical documents out, every bad record in rejects.

Incremental by content: each run lists the sources, hashes every file (reusing the hash of a
file whose size and mtime are unchanged), and ingests only units of work not already ingested
by an earlier version of the same series. Unchanged input is a no-op; new or changed files
append a new version whose parent is the previous one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..dataset import Dataset, is_published
from ..errors import ConfigError
from ..hashing import canonical_json, sha256_bytes, text_id
from ..rejects import RejectSink
from ..schema import DOCUMENT_SCHEMA
from ..sources import (
    Item,
    Problem,
    Skipped,
    detect_format,
    file_units,
    hf_digest,
    read_file,
    take_repairs,
    tree_digest,
)
from ..sources import builtin as default_corpus
from ..sources.html import to_text
from ..sources.normalize import normalize_text
from ..sources.readers import HTML_SUFFIXES
from ..stage import Mapper, Phase, Planned, Stage, StageContext, StageResult, sum_counts
from .config import IngestConfig, SourceConfig
from .urls import UrlFilter

REJECT_PREFIX = "ingest."


class IngestStage(Stage):
    name = "ingest"
    inputs = ()
    config_model = IngestConfig
    description = "Read the configured sources into canonical documents (incremental by content hash)."
    schedule = "data"
    version = "1"
    unique_ids = False  # exact copies keep their content id; dedup resolves them

    # -- incremental identity -------------------------------------------------------------------
    def series(self, config: BaseModel) -> str:
        """The config, and the content of the URL filter's list files (a changed list re-ingests)."""
        base = super().series(config)
        lists = config.url_filter.identity()  # type: ignore[attr-defined]
        return sha256_bytes(canonical_json([base, lists]).encode())[:32] if lists else base

    def resolve_parent(self, config: BaseModel, root: Path, inputs: dict, mapper: Mapper) -> Dataset | None:
        return series_head(root, self.name, self.series(config))

    def identity(self, config: IngestConfig, inputs: dict, parent: Dataset | None) -> dict:  # type: ignore[override]
        known: dict[str, dict[str, Any]] = {}
        for d in parent.chain() if parent else []:
            for f in d.manifest.get("stats", {}).get("units", []):
                known[f["key"]] = f
        units = list_units(config, known)
        seen = {(u["key"], u["sha256"]) for u in known.values()}
        new = [u for u in units if (u["key"], u["sha256"]) not in seen]
        ident = super().identity(config, inputs, parent)
        ident["units"] = new
        if config.url_filter.enabled:
            ident["url_lists"] = config.url_filter.identity()
        return ident

    def noop_result(self, planned: Planned) -> StageResult | None:
        if planned.identity["units"] or planned.parent is None:
            return None
        m = planned.parent.manifest
        return StageResult(
            self.name, m["fingerprint"], planned.parent.path, True, m["counts"], m.get("stats", {})
        )

    # -- work -----------------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        return [Phase("read", lambda ctx, _: list(enumerate(ctx.identity["units"])), ingest_unit)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        by_source: dict[str, dict[str, int]] = {}
        skipped: dict[str, int] = {}
        charset_from: dict[str, int] = {}
        for r in results:
            s = by_source.setdefault(
                r["source"], {"rows_in": 0, "rows_out": 0, "rows_rejected": 0, "rows_skipped": 0}
            )
            s["rows_in"] += r["rows_in"]
            s["rows_out"] += r["rows_out"]
            s["rows_rejected"] += sum(r["rejected"].values())
            s["rows_skipped"] += sum(r.get("skipped", {}).values())
            for total, add in ((skipped, r.get("skipped", {})), (charset_from, r.get("charset_from", {}))):
                for k, v in add.items():
                    total[k] = total.get(k, 0) + v
        stats = {
            "units": [r["unit"] for r in results],
            "utf8_repaired": sum(r["repaired"] for r in results),
            "utf8_replacements": sum(r["replacements"] for r in results),
            "by_source": dict(sorted(by_source.items())),
        }
        if skipped or charset_from:  # web sources: records that were never documents, and charsets
            stats["skipped"] = dict(sorted(skipped.items()))
            stats["charset_from"] = dict(sorted(charset_from.items()))
        totals = {"docs": sum(r["rows_out"] for r in results), "chars": sum(r["chars"] for r in results)}
        return {"counts": sum_counts(results), "stats": stats, "totals": totals}


def series_head(root: Path, stage: str, series: str) -> Dataset | None:
    """The newest version of a series: the one no other version names as its parent."""
    versions = {}
    for m in sorted((Path(root) / "datasets" / stage).glob("*/_manifest.json")):
        if not is_published(m.parent):
            continue
        man = json.loads(m.read_text())
        if man.get("series") == series:
            versions[man["fingerprint"]] = (m.parent, man)
    parents = {man["parent"]["fingerprint"] for _, man in versions.values() if man.get("parent")}
    heads = [Dataset(p) for fp, (p, _) in versions.items() if fp not in parents]
    if not heads:
        return None
    return max(heads, key=lambda d: (len(d.chain()), d.fingerprint))


def list_units(config: IngestConfig, known: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every unit of work the sources hold now, each with a content hash."""
    units: list[dict[str, Any]] = []
    for i, src in enumerate(config.sources):
        if src.format == "default":
            digest = sha256_bytes(canonical_json(default_corpus.identity()).encode())
            for u in default_corpus.units(config.default_corpus):
                key = f"default:{u['part']}:{u.get('start', 0)}"
                units.append({"source": i, "kind": "default", "key": key, "sha256": digest, **u})
        elif src.format == "hf":
            key = f"hf:{src.hf_name}:{src.hf_config}:{src.split}:{src.revision}:{src.data_files}"
            digest = hf_digest(src.model_dump(mode="json"), src.data_files)
            units.append({"source": i, "kind": "hf", "key": key, "sha256": digest})
        elif src.format == "hf_disk":
            path = Path(src.path or "").resolve()
            if not path.is_dir():
                raise ConfigError(f"source {i}: {src.path} is not a `save_to_disk` directory")
            units.append({"source": i, "kind": "hf", "key": f"hf_disk:{path}", "sha256": tree_digest(path)})
        else:
            keep = _is_html_name if src.format == "html" else None
            units += file_units(i, src.path or "", partial(_file_format, src=src), known, keep=keep)
    return units


def _file_format(path: Any, src: SourceConfig) -> str:
    return detect_format(path) if src.format == "auto" else src.format


def _is_html_name(name: str) -> bool:
    """`format: html` over a directory or glob reads the pages, not the images and styles beside them."""
    lower = name.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        lower = lower.removesuffix(suffix)
    return lower.endswith(HTML_SUFFIXES)


def ingest_unit(ctx: StageContext, indexed: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """Read one unit (a file, a dataset, a slice of the default corpus) into shards + rejects."""
    index, unit = indexed
    cfg: IngestConfig = ctx.config
    src = cfg.sources[unit["source"]]
    label = unit["part"] if unit["kind"] == "default" else src.label
    prefix = f"part-{index:05d}"
    docs = ctx.writer("data", DOCUMENT_SCHEMA, prefix, max_rows=cfg.shard_rows)
    origin = unit.get("path") or unit["key"]
    rows_in = rows_out = chars = repaired_docs = replacements = 0
    skipped: dict[str, int] = {}
    charset_from: dict[str, int] = {}
    url_filter = UrlFilter(cfg.url_filter) if cfg.url_filter.enabled else None
    rejects = RejectSink(ctx.rejects_writer(prefix), REJECT_PREFIX, label, origin)
    take_repairs()

    items = unit_items(unit, cfg)
    batch: list[dict[str, Any]] = []
    for n, item in items:
        if isinstance(item, Skipped):  # never a document (a WARC request record, a 404, an image)
            skipped[item.kind] = skipped.get(item.kind, 0) + 1
            continue
        rows_in += 1
        fixed = take_repairs()  # invalid sequences replaced while reading this record
        if isinstance(item, Problem):
            rejects.add(item.reason, item.detail, record=n, raw=item.raw)
            continue
        if url_filter is not None:
            blocked = url_filter.check(item.get(src.url_field) if src.url_field else None)
            if blocked is not None:
                detail = {"rule": blocked.rule, "entry": blocked.entry, "url": blocked.url}
                rejects.add(
                    f"url_filter.{blocked.rule}", detail, record=n, raw=blocked.url, value=blocked.entry
                )
                continue
        if "html" in item:  # a web page: its charset, then its main text
            page = to_text(item, src.extractor)
            fixed += take_repairs()
            if isinstance(page, Problem):
                rejects.add(page.reason, page.detail, record=n, raw=page.raw or _page_ref(item))
                continue
            item, charset_origin = page
            charset_from[charset_origin] = charset_from.get(charset_origin, 0) + 1
        if fixed:
            repaired_docs += 1
            replacements += fixed
        doc = to_document(item, src, cfg.max_doc_chars)
        if isinstance(doc, Problem):
            rejects.add(doc.reason, doc.detail, record=n, raw=item, value=doc.raw)
            continue
        doc.update(source=label, source_file=origin, source_record=n)
        batch.append(doc)
        rows_out += 1
        chars += len(doc["text"])
        if len(batch) >= 2_048:
            docs.write_rows(batch)
            batch = []
    docs.write_rows(batch)
    docs.close()
    rejects.close()
    rejected = rejects.counts
    out_unit = {k: unit[k] for k in ("key", "sha256", "size", "mtime_ns", "etag", "mtime") if k in unit}
    result = {
        "unit": out_unit,
        "source": label,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rejected": rejected,
        "repaired": repaired_docs,
        "replacements": replacements + take_repairs(),
        "chars": chars,
    }
    if skipped or charset_from:
        result.update(skipped=dict(sorted(skipped.items())), charset_from=dict(sorted(charset_from.items())))
    return result


def _page_ref(rec: dict[str, Any]) -> str:
    """What a rejected page is kept as: its URL and record id (its bytes stay in the WARC)."""
    return canonical_json({k: rec.get(k) for k in ("url", "warc_record_id", "content_type") if rec.get(k)})


def unit_items(unit: dict[str, Any], cfg: IngestConfig) -> Iterator[Item]:
    """The raw records (or problems) of one unit of work, as its source's reader yields them."""
    src = cfg.sources[unit["source"]]
    if unit["kind"] == "default":
        return default_corpus.read_unit(unit, cfg.default_corpus)
    if unit["kind"] == "hf":
        return src.read_hf()
    return read_file(unit["path"], unit["format"], src.read_options())


def to_document(rec: dict[str, Any], src: SourceConfig, max_chars: int) -> dict[str, Any] | Problem:
    """Map a raw record's fields onto the canonical schema, or say why it cannot be."""
    if src.text_field not in rec or rec[src.text_field] is None:
        return Problem("missing_text_field", f"no field {src.text_field!r}; fields are {sorted(rec)[:20]}")
    text = rec[src.text_field]
    if not isinstance(text, str):
        return Problem(
            "text_not_string", f"field {src.text_field!r} holds a {type(text).__name__}", type(text).__name__
        )
    if len(text) > max_chars:
        return Problem("too_long", f"{len(text)} characters, the limit is {max_chars}", len(text))
    text = normalize_text(text)
    if not text.strip():
        return Problem("empty_text", "the text is empty or only whitespace", 0)
    raw_id = rec.get(src.id_field) if src.id_field else rec.get("id")
    doc_id = str(raw_id) if raw_id not in (None, "") else text_id(text)
    url = rec.get(src.url_field) if src.url_field else None
    skip = {src.text_field, src.id_field or "id", src.url_field or ""}
    keep = src.meta_fields if src.meta_fields is not None else [k for k in rec if k not in skip]
    meta = {k: rec[k] for k in keep if k in rec}
    return {
        "id": doc_id,
        "text": text,
        "url": url if isinstance(url, str) else None,
        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None,
    }
