"""Readers for every file format. Each yields raw records or problems, never raises on bad data.

A reader yields ``(record_no, item)`` where item is a ``dict`` (a raw record whose fields are
mapped later), a :class:`Problem` (the record, or the whole file, cannot be read) or a
:class:`Skipped` (a record that is not a document by design, e.g. a WARC request record). Record
numbers are 1-based lines for line formats, 1-based records for WARC/WET and 1-based rows
otherwise; ``None`` means the whole file. A path is a local path or an fsspec URL
(:mod:`.location`). Web formats (``warc``, ``wet``, ``html``) live in :mod:`.warc` and
:mod:`.html`; an HTML record carries ``html`` bytes that :func:`.html.to_text` turns into text.
What a reader needs of its source's config is a :class:`ReadOptions`, so that ingest, labeled
and any other stage read a format the same way.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import IO, Literal

import orjson
import pyarrow.parquet as pq
import zstandard

from ..storage import is_url
from .location import open_raw, size_of
from .records import Item, Problem, Skipped, decode, take_repairs

__all__ = ["Item", "Problem", "ReadOptions", "Skipped", "decode", "read_file", "take_repairs"]

SNIFF_BYTES = 8_192


@dataclass(frozen=True)
class ReadOptions:
    """How to read one source's files: the fields the readers look at."""

    text_field: str = "text"  # Parquet: the column that must exist
    text_mode: Literal["file", "paragraphs"] = "file"  # plain text: one record per file or per block
    header: bool = True  # CSV/TSV: the first row names the columns
    columns: tuple[str, ...] | None = None  # CSV/TSV without a header
    quoting: Literal["auto", "csv", "none"] = "auto"  # auto: csv quoting for .csv, none for .tsv


WEB_FORMATS = ("warc", "wet", "html")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")

# Errors a damaged compressed stream raises part-way through.
STREAM_ERRORS = (EOFError, OSError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile)


def detect_format(path: PurePath | str) -> str:
    name = PurePosixPath(str(path)).name.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".wet") or name.endswith(".warc.wet"):
        return "wet"
    if name.endswith(".warc"):
        return "warc"
    if name.endswith(HTML_SUFFIXES):
        return "html"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".tsv"):
        return "tsv"
    return "text"


def open_binary(path: Path | str) -> IO[bytes]:
    """Open a local file or an fsspec URL, transparently decompressing .gz and .zst."""
    name = PurePosixPath(str(path)).name.lower()
    if name.endswith(".gz") and not is_url(str(path)):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a binary file; not typing.IO to typeshed
    raw = open_raw(path)
    if name.endswith(".gz"):
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        gz.myfileobj = raw  # type: ignore[assignment]  # closed with the GzipFile, as gzip.open does
        return gz  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        # The zstd reader has no readline; buffering it gives line iteration.
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return raw


def looks_binary(head: bytes) -> bool:
    """NUL bytes do not occur in text files; they do in executables, images and archives."""
    return b"\x00" in head


def read_file(path: Path | str, fmt: str, opts: ReadOptions) -> Iterator[Item]:
    """Every record of one file (a local path or an fsspec URL) in the given format."""
    reader = {
        "jsonl": read_jsonl,
        "parquet": read_parquet,
        "csv": read_csv,
        "tsv": read_csv,
        "text": read_text,
        "warc": read_web,
        "wet": read_web,
        "html": read_web,
    }
    try:
        if size_of(path) == 0:
            yield None, Problem("empty_file", "the file is empty")
            return
        yield from reader[fmt](path, opts, fmt)
    except PermissionError as e:
        yield None, Problem("unreadable_file", str(e))


def read_web(path: Path | str, opts: ReadOptions, fmt: str) -> Iterator[Item]:
    """WARC or WET records (:mod:`.warc`), or one HTML page per file (:mod:`.html`)."""
    if fmt == "html":
        yield from read_html(path)
        return
    from .warc import read_warc

    with open_raw(path) as raw:
        yield from read_warc(raw, fmt)


def read_html(path: Path | str) -> Iterator[Item]:
    """One HTML page per file (``format: html``), compressed or not; :mod:`.html` makes it text."""
    try:
        with open_binary(path) as f:
            data = f.read()
    except STREAM_ERRORS as e:
        yield 1, Problem("truncated_file", f"{type(e).__name__}: {e}")
        return
    if not data.strip():
        yield None, Problem("empty_file", "the file holds no HTML")
        return
    yield 1, {"html": data, "url": None, "content_type": "text/html", "http_charset": None}


def _sniff(path: Path | str) -> bytes | Problem:
    try:
        with open_binary(path) as f:
            head = f.read(SNIFF_BYTES)
    except STREAM_ERRORS as e:
        return Problem("corrupt_file", f"{type(e).__name__}: {e}")
    if not head:
        return Problem("empty_file", "the file holds no data after decompression")
    if looks_binary(head):
        return Problem("binary_file", "the file holds NUL bytes: not text")
    return head


def read_jsonl(path: Path | str, opts: ReadOptions, fmt: str = "jsonl") -> Iterator[Item]:
    head = _sniff(path)
    if isinstance(head, Problem):
        yield None, head
        return
    n = 0
    with open_binary(path) as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    text = decode(line)
                    try:
                        rec = orjson.loads(text)  # invalid UTF-8 inside an otherwise good line
                    except orjson.JSONDecodeError as e:
                        yield n, Problem("invalid_json", str(e), text.rstrip("\n"))
                        continue
                if not isinstance(rec, dict):
                    yield (
                        n,
                        Problem("not_an_object", f"a JSON {type(rec).__name__}, not an object", decode(line)),
                    )
                    continue
                yield n, rec
        except STREAM_ERRORS as e:
            yield (
                n + 1,
                Problem("truncated_file", f"stream ended early after line {n}: {type(e).__name__}: {e}"),
            )


def read_text(path: Path | str, opts: ReadOptions, fmt: str = "text") -> Iterator[Item]:
    head = _sniff(path)
    if isinstance(head, Problem):
        yield None, head
        return
    try:
        with open_binary(path) as f:
            data = f.read()
    except STREAM_ERRORS as e:
        yield 1, Problem("truncated_file", f"{type(e).__name__}: {e}")
        return
    text = decode(data)
    if opts.text_mode == "file":
        yield 1, {"text": text}
        return
    for n, block in enumerate(re.split(r"\n\s*\n", text.replace("\r\n", "\n")), 1):
        if block.strip():
            yield n, {"text": block.strip("\n")}


def read_csv(path: Path | str, opts: ReadOptions, fmt: str = "csv") -> Iterator[Item]:
    head = _sniff(path)
    if isinstance(head, Problem):
        yield None, head
        return
    csv.field_size_limit(sys.maxsize)
    delimiter = "\t" if fmt == "tsv" else ","
    n = 0
    with open_binary(path) as fb:
        f = io.TextIOWrapper(fb, encoding="utf-8", errors="tokenmill_repair", newline="")
        # In TSV exports a stray double quote is text; CSV quoting would silently merge lines.
        plain = opts.quoting == "none" or (opts.quoting == "auto" and fmt == "tsv")
        rows = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if plain else csv.QUOTE_MINIMAL)
        try:
            names: Sequence[str] | None = opts.columns
            if opts.header:
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
                            f"{len(row)} fields where the header has {len(names)}",
                            delimiter.join(row),
                        ),
                    )
                    continue
                yield n, dict(zip(names, row, strict=True))
        except csv.Error as e:
            yield n + 1, Problem("malformed_csv", str(e))
        except STREAM_ERRORS as e:
            yield n + 1, Problem("truncated_file", f"stream ended early: {type(e).__name__}: {e}")


def read_parquet(path: Path | str, opts: ReadOptions, fmt: str = "parquet") -> Iterator[Item]:
    try:
        pf = pq.ParquetFile(open_raw(path) if is_url(str(path)) else path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError subclasses for non-Parquet bytes
        yield None, Problem("unreadable_parquet", f"{type(e).__name__}: {e}")
        return
    names = pf.schema_arrow.names
    if opts.text_field not in names:
        detail = f"no column {opts.text_field!r}; columns are {names}"
        for i in range(pf.metadata.num_rows):
            yield i + 1, Problem("missing_text_field", detail)
        return
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=2_048):
            for rec in batch.to_pylist():
                n += 1
                yield n, rec
    except Exception as e:
        remaining = pf.metadata.num_rows - n
        for i in range(remaining):
            yield n + i + 1, Problem("corrupt_parquet", f"{type(e).__name__}: {e}")


def read_hf(
    *,
    disk_path: str | None = None,
    name: str | None = None,
    config: str | None = None,
    data_files: list[str] | None = None,
    split: str = "train",
    revision: str | None = None,
    streaming: bool = True,
) -> Iterator[Item]:
    """A Hugging Face dataset by builder/name (local files; no remote code) or a `save_to_disk` dir."""
    import datasets

    if disk_path is not None:
        ds = datasets.load_from_disk(disk_path)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        ds = datasets.load_dataset(
            name, config, data_files=data_files, split=split, revision=revision, streaming=streaming
        )
    for n, rec in enumerate(ds, 1):
        yield n, dict(rec)
