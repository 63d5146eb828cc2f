"""Reading labeled sources: raw records out, problems (never exceptions) for bad data.

Every format reuses the ingest readers (labeled corpora are often tab-separated text whose quotes
are part of the text: `quoting` defaults to none for TSV, so lines are never glued together).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..ingest.config import SourceConfig
from ..ingest.default_corpus import _docstrings, _module_name, stdlib_files
from ..ingest.readers import (
    Item,
    Problem,
    detect_format,
    read_csv,
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
        view = SourceConfig(path=src.path, format=fmt, header=src.header, columns=src.columns, quoting=src.quoting)
        yield from read_csv(path, view, fmt)
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


def _ingest_view(src: LabeledSourceConfig, first_field: str) -> SourceConfig:
    # The ingest readers only look at the text field (Parquet checks the column exists).
    return SourceConfig(path=src.path, format="jsonl", text_field=first_field)
