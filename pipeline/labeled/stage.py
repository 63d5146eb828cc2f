"""The labeled-data stage: labeled sources in, one clean dataset with label ids and splits out.

Two phases. ``read`` maps each source unit's records onto (text, label) or (prompt, response),
sends bad rows to rejects and stages the good ones. ``split`` then decides, from small key
columns only (ids, labels, seeded hashes; texts stay on disk), which rows are exact repeats,
which exceed ``max_per_label``, and the seeded stratified train/validation/test split of rows
whose source gave none: within each label, rows are ordered by a seeded hash and the first
``test_fraction`` go to test, the next ``val_fraction`` to validation, the rest to train.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from ..dataset import ShardWriter
from ..hashing import canonical_json, sha256_bytes, text_id
from ..rejects import RejectSink, reject_row, reject_rows_table
from ..schema import DOCUMENT_SCHEMA
from ..sources import Problem, Skipped, file_units, hf_digest, take_repairs, tree_digest
from ..sources import builtin as default_corpus
from ..sources.normalize import normalize_text
from ..stage import Phase, Stage, StageContext, sum_counts
from .config import LabeledConfig, LabeledSourceConfig
from .readers import file_format, read_default, read_hf_source, read_source_file

PREFIX = "labeled."
SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}

# The canonical document columns first (so every dataset check applies), then the labeled ones.
# For instruction data, `text` holds the prompt and `response` the response.
LABELED_SCHEMA = pa.schema(
    list(DOCUMENT_SCHEMA)
    + [
        pa.field("label", pa.string(), nullable=True),
        pa.field("label_id", pa.int32(), nullable=True),
        pa.field("response", pa.string(), nullable=True),
        pa.field("split", pa.string(), nullable=False),
    ]
)
# Rows between the phases: no label id or split decided yet, plus the seeded ordering key.
_PENDING_SCHEMA = pa.schema(
    [f for f in LABELED_SCHEMA if f.name not in ("label_id", "split")]
    + [pa.field("given_split", pa.string(), nullable=True), pa.field("key", pa.uint64(), nullable=False)]
)
_PENDING = "_pending"


class LabeledStage(Stage):
    name = "labeled"
    inputs = ()
    config_model = LabeledConfig
    description = "Read labeled examples, map labels to ids, split train/validation/test (stratified)."
    # The nightly data path needs it: decontaminate reads its validation and test texts.
    schedule = "data"
    version = "1"
    data_schema = LABELED_SCHEMA

    def identity(self, config: LabeledConfig, inputs: dict, parent: Any) -> dict:  # type: ignore[override]
        ident = super().identity(config, inputs, parent)
        ident["units"] = list_units(config)
        return ident

    def phases(self) -> list[Phase]:
        return [
            Phase("read", lambda ctx, _: list(enumerate(ctx.identity["units"])), read_unit),
            Phase("split", plan_split, split_unit),
        ]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        shutil.rmtree(ctx.staging_dir / _PENDING, ignore_errors=True)
        read = ctx.extra["read_results"]
        counts = sum_counts(read + results)
        counts["rows_in"] = sum(r["rows_in"] for r in read)
        by_label: dict[str, dict[str, int]] = {}
        for r in results:
            for label, splits in r["by_label"].items():
                row = by_label.setdefault(label, dict.fromkeys(SPLITS, 0))
                for s, n in splits.items():
                    row[s] += n
        label_ids = ctx.extra["label_ids"]
        stats = {
            "task": ctx.config.task,
            "labels": [
                {"label": lab, "id": label_ids[lab], **by_label.get(lab, dict.fromkeys(SPLITS, 0))}
                for lab in sorted(label_ids, key=label_ids.get)
            ]
            if ctx.config.task == "classify"
            else [],
            "by_source": _by_source(read),
            "utf8_repaired": sum(r["repaired"] for r in read),
        }
        totals = {s: sum(v[s] for v in by_label.values()) for s in SPLITS}
        totals["rows"] = counts["rows_out"]
        totals["n_labels"] = len(label_ids)
        return {"counts": counts, "stats": stats, "totals": totals}


def label_map(manifest: dict[str, Any]) -> list[str]:
    """The labels of a published labeled dataset, in id order."""
    return [x["label"] for x in sorted(manifest["stats"]["labels"], key=lambda x: x["id"])]


# -- units ---------------------------------------------------------------------------------------
def list_units(config: LabeledConfig) -> list[dict[str, Any]]:
    """One unit per source file (or per HF / default source), with what identifies its content."""
    units: list[dict[str, Any]] = []
    for i, src in enumerate(config.sources):
        if src.format == "default":
            digest = sha256_bytes(canonical_json(default_corpus.identity()).encode())
            units.append({"source": i, "kind": "default", "key": "default", "sha256": digest})
        elif src.format in ("hf", "hf_disk"):
            digest = hf_digest(src.model_dump(mode="json"), src.data_files)
            if src.format == "hf_disk" and src.path:
                digest = sha256_bytes(f"{digest}:{tree_digest(Path(src.path))}".encode())
            units.append(
                {"source": i, "kind": "hf", "key": f"hf:{src.hf_name or src.path}", "sha256": digest}
            )
        else:
            units += file_units(i, src.path or "", partial(file_format, src=src), what="labeled source")
    return units


def read_unit(ctx: StageContext, item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """Map one unit's records to pending rows; unusable records go to rejects with the reason."""
    index, unit = item
    cfg: LabeledConfig = ctx.config
    src = cfg.sources[unit["source"]]
    label = src.label
    origin = unit.get("path") or unit["key"]
    prefix = f"part-{index:05d}"
    pending = ShardWriter(ctx.view(_PENDING), _PENDING_SCHEMA, prefix=prefix, max_rows=cfg.shard_rows)
    rejects = RejectSink(ctx.rejects_writer(f"read-{index:05d}"), PREFIX, label, origin)
    rows_in = 0
    labels: dict[str, int] = {}
    first_field = src.text_field if cfg.task == "classify" else src.prompt_field
    take_repairs()

    if unit["kind"] == "default":
        items = read_default(cfg.default_task)
        fields = {"text_field": "text", "label_field": "label"}
    elif unit["kind"] == "hf":
        items = read_hf_source(src)
        fields = {}
    else:
        items = read_source_file(Path(unit["path"]), unit["format"], src, first_field)
        fields = {}
    view = src.model_copy(update=fields)
    batch: list[dict[str, Any]] = []
    for n, rec in items:
        rows_in += 1
        if isinstance(rec, Problem):
            rejects.add(rec.reason, rec.detail, record=n, raw=rec.raw)
            continue
        assert not isinstance(rec, Skipped)  # only web formats skip records; labeled reads none
        row = to_example(rec, view, cfg)
        if isinstance(row, Problem):
            rejects.add(row.reason, row.detail, record=n, raw=rec, value=row.raw)
            continue
        row.update(source=label, url=None, source_file=origin, source_record=n)
        row["key"] = xxhash.xxh3_64_intdigest(f"{cfg.seed}:{row['id']}".encode())
        if row["label"] is not None:
            labels[row["label"]] = labels.get(row["label"], 0) + 1
        batch.append(row)
        if len(batch) >= 2_048:
            pending.write_rows(batch)
            batch = []
    pending.write_rows(batch)
    pending.close()
    rejects.close()
    return {
        "index": index,
        "source": label,
        "rows_in": rows_in,
        "rows_out": 0,
        "rejected": rejects.counts,
        "labels": labels,
        "repaired": take_repairs(),
    }


def to_example(rec: dict[str, Any], src: LabeledSourceConfig, cfg: LabeledConfig) -> dict[str, Any] | Problem:
    """One raw record as a labeled row, or the reason it cannot be one."""
    first = src.text_field if cfg.task == "classify" else src.prompt_field
    text = _text(rec, first, "text" if cfg.task == "classify" else "prompt", cfg.max_text_chars)
    if isinstance(text, Problem):
        return text
    lab = response = None
    if cfg.task == "classify":
        lab = normalize_label(rec.get(src.label_field))
        if lab is None:
            return Problem("missing_label", f"no value in field {src.label_field!r}")
        if cfg.labels is not None and lab not in cfg.labels:
            return Problem("unknown_label", f"label {lab!r} is not one of {cfg.labels}", lab)
        doc_id = text_id(text)
    else:
        response = _text(rec, src.response_field, "response", cfg.max_text_chars)
        if isinstance(response, Problem):
            return response
        doc_id = text_id(text + "\n\x00\n" + response)
    given: str | None = None
    if src.split is not None:
        given = src.split
    elif src.split_field is not None:
        raw = rec.get(src.split_field)
        given = _SPLIT_ALIASES.get(str(raw).strip().lower()) if raw is not None else None
        if given is None:
            return Problem("unknown_split", f"split {raw!r} is not train, validation or test", raw)
    if src.id_field:
        raw_id = rec.get(src.id_field)
        if raw_id not in (None, ""):
            doc_id = str(raw_id)
    return {
        "id": doc_id,
        "text": text,
        "label": lab,
        "response": response,
        "given_split": given,
        "meta": None,
    }


def _text(rec: dict[str, Any], field: str, what: str, max_chars: int) -> str | Problem:
    value = rec.get(field)
    if value is None:
        return Problem(f"missing_{what}", f"no field {field!r}; fields are {sorted(rec)[:20]}")
    if not isinstance(value, str):
        return Problem(
            f"{what}_not_string", f"field {field!r} holds a {type(value).__name__}", type(value).__name__
        )
    if len(value) > max_chars:
        return Problem("too_long", f"{len(value)} characters, the limit is {max_chars}", len(value))
    value = normalize_text(value).strip()
    if not value:
        return Problem(f"empty_{what}", f"the {what} is empty or only whitespace", 0)
    return value


def normalize_label(value: Any) -> str | None:
    """Labels are strings: 1, 1.0 and "1 " are the same label; None and "" are no label."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


# -- split ---------------------------------------------------------------------------------------
def plan_split(ctx: StageContext, read_results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decide every pending row's fate from its key columns; one unit per pending shard."""
    cfg: LabeledConfig = ctx.config
    ctx.extra["read_results"] = read_results
    if cfg.task == "classify":
        seen = sorted({lab for r in read_results for lab in r["labels"]})
        names = cfg.labels if cfg.labels is not None else seen
        label_ids = {lab: i for i, lab in enumerate(names)}
    else:
        label_ids = {}
    ctx.extra["label_ids"] = label_ids
    shards = (
        sorted((ctx.staging_dir / _PENDING).glob("*.parquet"))
        if (ctx.staging_dir / _PENDING).is_dir()
        else []
    )
    if not shards:
        return []
    cols = ["id", "label", "given_split", "key"]
    tables = [pq.read_table(p, columns=cols) for p in shards]
    sizes = [t.num_rows for t in tables]
    t = pa.concat_tables(tables)
    ids = t["id"].to_pylist()
    labels = t["label"].to_pylist()
    given = t["given_split"].to_pylist()
    keys = t["key"].to_numpy()
    n = len(ids)
    fate = np.full(n, -1, dtype=np.int8)  # index into SPLITS, or one of the reject codes below
    dup_of: dict[int, str] = {}
    if cfg.dedup:
        first: dict[str, int] = {}
        for i, doc_id in enumerate(ids):  # shards are in unit order, rows in record order
            if doc_id in first:
                fate[i] = DUPLICATE
                dup_of[i] = doc_id
            else:
                first[doc_id] = i
    groups: dict[str | None, list[int]] = {}
    for i in range(n):
        if fate[i] == -1:
            groups.setdefault(labels[i] if cfg.task == "classify" else None, []).append(i)
    for members in groups.values():
        idx = np.array(members, dtype=np.int64)
        idx = idx[np.argsort(keys[idx], kind="stable")]
        if cfg.max_per_label is not None and len(idx) > cfg.max_per_label:
            fate[idx[cfg.max_per_label :]] = OVER_CAP
            idx = idx[: cfg.max_per_label]
        free = np.array([i for i in idx if given[i] is None], dtype=np.int64)
        for i in idx:
            if given[i] is not None:
                fate[i] = SPLITS.index(given[i])
        n_test = round(len(free) * cfg.test_fraction)
        n_val = round(len(free) * cfg.val_fraction)
        fate[free[:n_test]] = 2
        fate[free[n_test : n_test + n_val]] = 1
        fate[free[n_test + n_val :]] = 0
    units, start = [], 0
    for p, size in zip(shards, sizes, strict=True):
        part = fate[start : start + size]
        units.append(
            {
                "path": str(p),
                "fate": part,
                "dup_of": {i - start: d for i, d in dup_of.items() if start <= i < start + size},
                "label_ids": label_ids,
            }
        )
        start += size
    return units


DUPLICATE, OVER_CAP = 10, 11


def split_unit(ctx: StageContext, unit: dict[str, Any]) -> dict[str, Any]:
    cfg: LabeledConfig = ctx.config
    name = Path(unit["path"]).stem
    table = pq.read_table(unit["path"])
    fate, label_ids = unit["fate"], unit["label_ids"]
    out = ctx.writer("data", LABELED_SCHEMA, name, max_rows=cfg.shard_rows)
    rejects = ctx.rejects_writer(f"split-{name}")
    rows, bad = [], []
    rejected: dict[str, int] = {}
    by_label: dict[str, dict[str, int]] = {}
    for i, r in enumerate(table.to_pylist()):
        f = int(fate[i])
        if f == DUPLICATE:
            reason = PREFIX + "duplicate"
            bad.append(
                reject_row(
                    reason,
                    doc_id=r["id"],
                    value=r["label"],
                    detail="an earlier row has the same id",
                    duplicate_of=unit["dup_of"][i],
                    source=r["source"],
                    source_file=r["source_file"],
                    record=r["source_record"],
                    text=r["text"],
                )
            )
        elif f == OVER_CAP:
            reason = PREFIX + "over_max_per_label"
            bad.append(
                reject_row(
                    reason,
                    doc_id=r["id"],
                    value=r["label"],
                    threshold=str(cfg.max_per_label),
                    source=r["source"],
                    source_file=r["source_file"],
                    record=r["source_record"],
                    text=r["text"],
                )
            )
        else:
            split = SPLITS[f]
            r["split"] = split
            r["label_id"] = label_ids.get(r["label"]) if r["label"] is not None else None
            rows.append(r)
            s = by_label.setdefault(r["label"] or "", dict.fromkeys(SPLITS, 0))
            s[split] += 1
            continue
        rejected[reason] = rejected.get(reason, 0) + 1
    out.write_rows(rows)
    out.close()
    if bad:
        rejects.write(reject_rows_table(bad))
    rejects.close()
    return {"rows_in": 0, "rows_out": len(rows), "rejected": rejected, "by_label": by_label}


def _by_source(read: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in read:
        s = out.setdefault(r["source"], {"rows_in": 0, "rows_rejected": 0})
        s["rows_in"] += r["rows_in"]
        s["rows_rejected"] += sum(r["rejected"].values())
    return dict(sorted(out.items()))
