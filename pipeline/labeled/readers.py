"""Reading labeled sources: raw records out, problems (never exceptions) for bad data.

JSON Lines, Parquet and Hugging Face sources reuse the ingest readers. Delimited files have
their own reader because labeled corpora are often tab-separated text whose quotes are part of
the text: the csv module's default quoting would silently glue hundreds of lines into one field.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path

from ..ingest.config import SourceConfig
from ..ingest.default_corpus import _docstrings, _module_name, stdlib_files
from ..ingest.readers import (
    STREAM_ERRORS,
    Item,
    Problem,
    _sniff,
    detect_format,
    open_binary,
    read_hf,
    read_jsonl,
    read_parquet,
)
from .config import DefaultTaskConfig, LabeledSourceConfig


def file_format(path: Path, src: LabeledSourceConfig) -> str:
    if src.format != "auto":
        return src.format
    fmt = detect_format(path)
    return "tsv" if fmt == "text" and path.suffix.lower() == ".txt" else fmt


def read_source_file(path: Path, fmt: str, src: LabeledSourceConfig, first_field: str) -> Iterator[Item]:
    if path.stat().st_size == 0:
        yield None, Problem("empty_file", "the file is empty")
        return
    if fmt in ("csv", "tsv"):
        yield from read_delimited(path, src, fmt)
    elif fmt == "jsonl":
        yield from read_jsonl(path, _ingest_view(src, first_field))
    elif fmt == "parquet":
        yield from read_parquet(path, _ingest_view(src, first_field))
    else:
        yield None, Problem("unknown_format", f"format {fmt!r} is not a labeled-data format")


def read_hf_source(src: LabeledSourceConfig, first_field: str) -> Iterator[Item]:
    fmt = "hf_disk" if src.format == "hf_disk" else "hf"
    view = SourceConfig(
        path=src.path,
        format=fmt,
        text_field=first_field,
        hf_name=src.hf_name,
        hf_config=src.hf_config,
        data_files=src.data_files,
        split=src.hf_split,
        streaming=False,
    )
    yield from read_hf(view)


def read_default(cfg: DefaultTaskConfig) -> Iterator[Item]:
    """Docstrings of the configured standard-library packages, each with its ``package``."""
    wanted = set(cfg.packages)
    files = [f for f in stdlib_files() if _module_name(f).split(".")[0] in wanted]
    yield from enumerate(_docstrings(files, cfg.min_chars), 1)


def read_delimited(path: Path, src: LabeledSourceConfig, fmt: str) -> Iterator[Item]:
    head = _sniff(path)
    if isinstance(head, Problem):
        yield None, head
        return
    csv.field_size_limit(sys.maxsize)
    delimiter = "\t" if fmt == "tsv" else ","
    quoting = src.quoting if src.quoting != "auto" else ("csv" if fmt == "csv" else "none")
    kw = {"quoting": csv.QUOTE_NONE} if quoting == "none" else {}
    n = 0
    with open_binary(path) as fb:
        f = io.TextIOWrapper(fb, encoding="utf-8", errors="tokenmill_repair", newline="")
        rows = csv.reader(f, delimiter=delimiter, **kw)
        try:
            names = src.columns
            if src.header:
                header = next(rows, None)
                n += 1
                names = names or [h.strip() for h in header or []]
            if not names:
                yield None, Problem("no_header", "no header row and no `columns` configured")
                return
            for row in rows:
                n += 1
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(names):
                    yield (
                        n,
                        Problem(
                            "wrong_field_count",
                            f"{len(row)} fields where there are {len(names)} columns",
                            delimiter.join(row),
                        ),
                    )
                    continue
                yield n, dict(zip(names, row, strict=True))
        except csv.Error as e:
            yield n + 1, Problem("malformed_csv", str(e))
        except STREAM_ERRORS as e:
            yield n + 1, Problem("truncated_file", f"stream ended early: {type(e).__name__}: {e}")


def _ingest_view(src: LabeledSourceConfig, first_field: str) -> SourceConfig:
    # The ingest readers only look at the text field (Parquet checks the column exists).
    return SourceConfig(path=src.path, format="jsonl", text_field=first_field)
