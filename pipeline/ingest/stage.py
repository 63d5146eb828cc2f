"""The ingest stage: sources in, canonical documents out, every bad record in rejects.

Incremental by content: each run lists the sources, hashes every file (reusing the hash of a
file whose size and mtime are unchanged), and ingests only units of work not already ingested
by an earlier version of the same series. Unchanged input is a no-op; new or changed files
append a new version whose parent is the previous one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..dataset import Dataset, is_published
from ..errors import ConfigError
from ..hashing import canonical_json, sha256_bytes, text_id
from ..rejects import RejectSink
from ..schema import DOCUMENT_SCHEMA
from ..sources import (
    Problem,
    detect_format,
    file_units,
    hf_digest,
    read_file,
    read_hf,
    take_repairs,
    tree_digest,
)
from ..sources import builtin as default_corpus
from ..sources.normalize import normalize_text
from ..stage import Mapper, Phase, Planned, Stage, StageContext, StageResult, sum_counts
from .config import IngestConfig, SourceConfig

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
        for r in results:
            s = by_source.setdefault(r["source"], {"rows_in": 0, "rows_out": 0, "rows_rejected": 0})
            s["rows_in"] += r["rows_in"]
            s["rows_out"] += r["rows_out"]
            s["rows_rejected"] += sum(r["rejected"].values())
        stats = {
            "units": [r["unit"] for r in results],
            "utf8_repaired": sum(r["repaired"] for r in results),
            "utf8_replacements": sum(r["replacements"] for r in results),
            "by_source": dict(sorted(by_source.items())),
        }
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
            units += file_units(i, src.path or "", lambda f, s=src: _file_format(f, s), known)
    return units


def _file_format(path: Path, src: SourceConfig) -> str:
    return detect_format(path) if src.format == "auto" else src.format


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
    rejects = RejectSink(ctx.rejects_writer(prefix), REJECT_PREFIX, label, origin)
    take_repairs()

    if unit["kind"] == "default":
        items = default_corpus.read_unit(unit, cfg.default_corpus)
    elif unit["kind"] == "hf":
        items = read_hf(
            disk_path=src.path if src.format == "hf_disk" else None,
            name=src.hf_name,
            config=src.hf_config,
            data_files=src.data_files,
            split=src.split,
            revision=src.revision,
            streaming=src.streaming,
        )
    else:
        items = read_file(Path(unit["path"]), unit["format"], src.read_options())

    batch: list[dict[str, Any]] = []
    for n, item in items:
        rows_in += 1
        fixed = take_repairs()  # invalid UTF-8 sequences replaced while reading this record
        if fixed:
            repaired_docs += 1
            replacements += fixed
        if isinstance(item, Problem):
            rejects.add(item.reason, item.detail, record=n, raw=item.raw)
            continue
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
    out_unit = {k: unit[k] for k in ("key", "sha256", "size", "mtime_ns") if k in unit}
    return {
        "unit": out_unit,
        "source": label,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rejected": rejected,
        "repaired": repaired_docs,
        "replacements": replacements + take_repairs(),
        "chars": chars,
    }


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
