"""The evaluation texts: the labeled stage's validation and test splits, and every ``eval_sets`` source.

Eval set files are read through `pipeline.sources` exactly as ingest reads them. A record that
cannot be read, or holds no text, is counted by reason in the stage's statistics (it cannot be a
reject: it is not a pretraining document). An eval set that matches no file, or yields no text,
is a configuration error: decontaminating against nothing would look like a clean result.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..dataset import Dataset
from ..errors import ConfigError
from ..hashing import text_id
from ..sources import Problem, Skipped, detect_format, file_units, hf_digest, read_file
from ..sources.normalize import normalize_text
from .config import DecontaminateConfig, EvalSetConfig

LABELED_SPLITS = ("validation", "test")


def labeled_set_name(split: str) -> str:
    return f"labeled.{split}"


def set_names(cfg: DecontaminateConfig) -> list[str]:
    """Eval set names in priority order (a document overlapping several is attributed to the first)."""
    names = [labeled_set_name(s) for s in reversed(LABELED_SPLITS)]  # test first: it is the one reported
    for i, src in enumerate(cfg.eval_sets):
        name = src.label
        if name in names:
            raise ConfigError(f"decontaminate.eval_sets[{i}]: the name {name!r} is taken; set `name`")
        if not name or any(c.isspace() for c in name):
            raise ConfigError(f"decontaminate.eval_sets[{i}]: name {name!r} must be one word")
        names.append(name)
    return names


def set_lengths(cfg: DecontaminateConfig) -> list[int]:
    """The n-gram length of each eval set, in :func:`set_names` order."""
    labeled = cfg.labeled_n or cfg.n
    return [labeled] * len(LABELED_SPLITS) + [src.n or cfg.n for src in cfg.eval_sets]


def list_units(cfg: DecontaminateConfig) -> list[dict[str, Any]]:
    """What identifies the eval sets' content (part of the stage's fingerprint); checks they exist."""
    units: list[dict[str, Any]] = []
    for i, src in enumerate(cfg.eval_sets):
        where = f"decontaminate.eval_sets[{i}]"
        if src.format in ("hf", "hf_disk"):
            units.append(
                {
                    "source": i,
                    "kind": "hf",
                    "key": f"hf:{src.hf_name or src.path}",
                    "sha256": hf_digest(src.model_dump(mode="json"), src.data_files),
                }
            )
            continue
        found = file_units(i, src.path or "", partial(_format, src=src), what=where)
        for u in found:
            if Path(u["path"]).stat().st_size == 0:
                raise ConfigError(f"{where}: {u['path']} is empty")
        units += found
    return units


def _format(path: Path, src: EvalSetConfig) -> str:
    return detect_format(path) if src.format == "auto" else src.format


def labeled_texts(labeled: Dataset) -> Iterator[tuple[str, str, str]]:
    """(split, id, text) of the labeled dataset's validation and test rows; instruction rows are
    prompt and response together."""
    cols = ["id", "text", "response", "split"]
    for batch in labeled.iter_batches(columns=cols):
        keep = pc.is_in(batch.column("split"), value_set=pa.array(LABELED_SPLITS))
        rows = batch.filter(keep).to_pylist()
        for r in rows:
            text = r["text"] if not r["response"] else f"{r['text']}\n{r['response']}"
            yield r["split"], r["id"], text


def eval_set_texts(
    src: EvalSetConfig, units: list[dict[str, Any]], where: str
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(id, text) of one eval set's records, and the records skipped by reason."""
    out: list[tuple[str, str]] = []
    skipped: dict[str, int] = {}
    opts = src.read_options()
    for unit in units:
        if unit["kind"] == "hf":
            items = src.read_hf(streaming=False)
        else:
            items = read_file(Path(unit["path"]), unit["format"], opts)
        for _n, rec in items:
            if isinstance(rec, Problem):
                skipped[rec.reason] = skipped.get(rec.reason, 0) + 1
                continue
            if isinstance(rec, Skipped):  # never text (a WARC request record, a 404, an image)
                skipped[rec.kind] = skipped.get(rec.kind, 0) + 1
                continue
            text = rec.get(src.text_field)
            if not isinstance(text, str) or not text.strip():
                reason = (
                    "missing_text"
                    if text is None
                    else "empty_text"
                    if isinstance(text, str)
                    else "text_not_string"
                )
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            text = normalize_text(text)  # as ingest stores a document
            raw_id = rec.get(src.id_field) if src.id_field else rec.get("id")
            out.append((str(raw_id) if raw_id not in (None, "") else text_id(text), text))
    if not out:
        detail = f" (skipped: {', '.join(f'{k} {v}' for k, v in sorted(skipped.items()))})" if skipped else ""
        raise ConfigError(
            f"{where}: {src.path or src.hf_name} holds no evaluation text in field {src.text_field!r}{detail}"
        )
    return out, skipped
