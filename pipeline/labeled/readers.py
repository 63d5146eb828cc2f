"""Reading labeled sources: raw records out, problems (never exceptions) for bad data.

Every file format is read by `pipeline.sources` exactly as ingest reads it (labeled corpora are
often tab-separated text whose quotes are part of the text: ``quoting`` defaults to none for
TSV, so lines are never glued together).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import xxhash

from ..sources import Item, Problem, detect_format, read_file, read_hf
from ..sources.builtin import docstrings, module_name, stdlib_files
from .config import FLUENCY_LABELS, DefaultTaskConfig, LabeledSourceConfig

FILE_FORMATS = ("csv", "tsv", "jsonl", "parquet")


def file_format(path: Path, src: LabeledSourceConfig) -> str:
    if src.format != "auto":
        return src.format
    fmt = detect_format(path)
    return "tsv" if fmt == "text" and path.suffix.lower() == ".txt" else fmt


def read_source_file(path: Path, fmt: str, src: LabeledSourceConfig, first_field: str) -> Iterator[Item]:
    if fmt not in FILE_FORMATS:
        if path.stat().st_size == 0:
            yield None, Problem("empty_file", "the file is empty")
        else:
            yield None, Problem("unknown_format", f"format {fmt!r} is not a labeled-data format")
        return
    yield from read_file(path, fmt, src.read_options(first_field))


def read_hf_source(src: LabeledSourceConfig) -> Iterator[Item]:
    yield from read_hf(
        disk_path=src.path if src.format == "hf_disk" else None,
        name=src.hf_name,
        config=src.hf_config,
        data_files=src.data_files,
        split=src.hf_split,
        streaming=False,
    )


def read_default(cfg: DefaultTaskConfig) -> Iterator[Item]:
    """Docstrings of the configured standard-library packages, each with its ``label``."""
    wanted = set(cfg.packages)
    files = [f for f in stdlib_files() if module_name(f).split(".")[0] in wanted]
    for n, rec in enumerate(docstrings(files, cfg.min_chars), 1):
        if cfg.kind == "packages":
            yield n, {**rec, "label": rec["package"]}
            continue
        opening = rec["text"].split()[: cfg.fluency_words]
        key = xxhash.xxh3_64_intdigest(rec["id"].encode())
        shuffled = key & 1 == 1
        words = shuffle_words(opening, key) if shuffled else opening
        if len(words) < 8 or (shuffled and words == opening):
            continue  # too few words to judge, or a shuffle that changed nothing: no honest label
        yield n, {**rec, "text": " ".join(words), "label": FLUENCY_LABELS[shuffled]}


def shuffle_words(words: list[str], key: int) -> list[str]:
    """The words in an order fixed by ``key``: sorted by a hash of (key, position), so the same on every
    platform and library version (a seeded RNG's shuffle is not promised to be)."""
    order = sorted(range(len(words)), key=lambda i: xxhash.xxh3_64_intdigest(f"{key}:{i}".encode()))
    return [words[i] for i in order]
