"""WARC and WET files, read with fastwarc, damage turned into problems instead of silence.

fastwarc frames the records; this module decides what each one is:

* ``warc``: a ``response`` whose HTTP status is 200 and whose content type is HTML
  (``text/html``, ``application/xhtml+xml``; with no HTTP content type, the crawler's
  ``WARC-Identified-Payload-Type``) becomes an HTML record (``html`` bytes, ``url``,
  ``warc_record_id``, ``warc_date``, ``content_type``, ``http_charset``), turned into text by
  :mod:`.html`. Everything else is a :class:`~.records.Skipped` of its kind: the record type
  (``warcinfo``, ``request``, ``metadata``, ``revisit``, ...), ``non_200`` or ``non_html``.
* ``wet``: each ``conversion`` record (Common Crawl's extracted text) is a text record.

Bytes are decompressed here, not by fastwarc, because fastwarc ends quietly where a gzip member
is cut off or a record header is damaged. Damage found:

* ``truncated_file``: the stream ends inside a gzip member or inside a record; the records
  before it are kept.
* ``content_length_mismatch``: a record's Content-Length does not lead to the next record
  header. The record is rejected, the reader finds the next ``WARC/1.x`` header and goes on.
* ``bad_warc_record``: bytes that are not a WARC record, skipped to the next header.
* ``bad_http_header``: a response without an HTTP status line, or whose header never ends.
* ``bad_content_encoding``: a chunked or gzip/deflate/brotli body that does not decode.
* ``not_a_warc``: a non-empty file with no WARC record in it.

A record is passed on only once the next header has been read, so a record whose length
turns out wrong is never half-emitted. Memory holds one record plus fastwarc's read-ahead.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import zstandard

from .records import Item, Problem, Skipped, decode

CHUNK = 1 << 20  # compressed bytes read at a time
HTML_TYPES = ("text/html", "application/xhtml+xml")
HEAD_BYTES = 64 << 10  # an HTTP header longer than this is not one
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
# A record header: the version line and the first field name (not only at a line start: junk
# written over a record boundary may run into the next header).
_HEADER = re.compile(rb"(WARC/1\.[01]\r?\n)[A-Za-z][A-Za-z0-9-]*:")
_STATUS = re.compile(rb"HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s[^\r\n]*)?")
_HISTORY_CAP = 256 << 20  # never keep more than this for re-reading after damage


class InflatedStream:
    """A decompressed byte stream for fastwarc: gzip (any number of members), zstd or plain.

    Sniffs the compression from the first bytes. A stream that ends inside a member, or
    holds bytes that do not decompress, ends early with ``error`` set instead of raising
    inside fastwarc. Bytes handed out since :meth:`mark` are kept so that the reader can look
    at them again after damage (:meth:`since`).
    """

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        head = raw.read(CHUNK)
        self.codec = "gzip" if head.startswith(_GZIP) else "zstd" if head.startswith(_ZSTD) else "plain"
        self._pending = head
        self._dec: Any = self._decompressor()
        self._in_member = False
        self._buf = bytearray()
        self.eof = False
        self.error: str | None = None
        self.pos = 0  # bytes handed out so far
        self._hist: list[bytes] = []
        self._hist_start = 0

    def _decompressor(self) -> Any:
        if self.codec == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.codec == "zstd":
            return zstandard.ZstdDecompressor().decompressobj()
        return None

    def _fill(self) -> None:
        data = self._pending or self.raw.read(CHUNK)
        self._pending = b""
        if not data:
            if self._in_member:
                self.error = f"the {self.codec} stream ends inside a compressed block"
            self.eof = True
            return
        if self._dec is None:
            self._buf += data
            return
        try:
            if self.codec == "gzip" and not self._in_member and not data.startswith(_GZIP):
                raise zlib.error(f"{len(data)} bytes after the last gzip member are not gzip data")
            self._in_member = True
            self._buf += self._dec.decompress(data)
            if self.codec == "gzip" and self._dec.eof:  # next member, if any
                self._pending = self._dec.unused_data
                self._dec = self._decompressor()
                self._in_member = False
            elif self.codec == "zstd" and self._dec.eof:
                self._pending = self._dec.unused_data
                self._dec = self._decompressor()
                self._in_member = False
        except (zlib.error, zstandard.ZstdError) as e:
            self.error = f"{type(e).__name__}: {e}"
            self.eof = True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and not self.eof:
            self._fill()
        n = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self.pos += n
        if out:
            self._hist.append(out)
        return out

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        raise OSError("not seekable")

    def close(self) -> None:
        pass

    def mark(self, offset: int) -> None:
        """Forget bytes before ``offset`` (the start of the record being read)."""
        while self._hist and self._hist_start + len(self._hist[0]) <= offset:
            self._hist_start += len(self._hist.pop(0))
        kept = self.pos - self._hist_start
        while self._hist and kept > _HISTORY_CAP:
            kept -= len(self._hist[0])
            self._hist_start += len(self._hist.pop(0))

    def since(self, offset: int) -> tuple[int, bytes]:
        """The bytes handed out from ``offset`` on (or from the oldest one kept) and where they start."""
        data = b"".join(self._hist)
        start = max(offset, self._hist_start)
        return start, data[start - self._hist_start :]


class _Replay:
    """Bytes already handed out, served again, then the rest of the stream (after a resync)."""

    def __init__(self, stream: InflatedStream, start: int, data: bytes):
        self.stream = stream
        self.data = data
        self.pos = start
        self._end = start + len(data)

    def read(self, n: int = -1) -> bytes:
        if self.pos < self._end:
            i = len(self.data) - (self._end - self.pos)
            out = self.data[i : i + n] if n >= 0 else self.data[i:]
            self.pos += len(out)
            return out
        out = self.stream.read(n)
        self.pos += len(out)
        return out

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        raise OSError("not seekable")

    def close(self) -> None:
        pass


@dataclass
class _Held:
    """A record read but not yet passed on: its number, item, start offset and declared length."""

    n: int
    item: Any
    start: int
    length: int
    digest: str | None = None  # WARC-Block-Digest


def read_warc(raw: IO[bytes], kind: str = "warc") -> Iterator[Item]:
    """Records of a WARC (``kind="warc"``) or WET (``kind="wet"``) stream, numbered from 1.

    Each item is an HTML or text record (dict), a :class:`Problem` or a :class:`Skipped`.
    """
    from fastwarc.warc import ArchiveIterator

    stream = InflatedStream(raw)
    source: Any = stream
    n = 0  # records seen
    resumed_at = 0  # where fastwarc (re)started reading
    truncated = False
    while True:
        held: _Held | None = None
        error = None
        try:
            for rec in ArchiveIterator(source, parse_http=False, stream_detect=False):
                stream.mark(rec.stream_pos)
                if held is not None:
                    yield held.n, held.item
                n += 1
                held = _Held(
                    n,
                    _record_item(rec, kind),
                    rec.stream_pos,
                    rec.content_length,
                    rec.headers.get("WARC-Block-Digest"),
                )
        except OSError as e:  # a record header that does not parse
            error = str(e)
        # fastwarc stopped: at the end of the data, at damage, or (silently) at a cut-off header.
        resume = None
        if held is not None:
            start, data = stream.since(held.start)
            end = _record_end(held, start, data)
            rest = data[end - start :] if end is not None else b""
            whole = end is not None and not isinstance(held.item, _Short)
            end = end if end is not None else held.start  # (only used when whole)
            if whole and not rest.strip():
                yield held.n, held.item
                if not stream.eof:  # fastwarc stopped before the end of the data: go on after it
                    resume = _find_header(stream, end)[0]
            elif whole and rest.startswith(b"WARC/1."):
                yield held.n, held.item
                if error is None:  # fastwarc ended quietly on a header the data ends inside of
                    truncated = True
                    yield (
                        n + 1,
                        Problem("truncated_file", f"the file ends inside the header of record {n + 1}"),
                    )
                else:  # fastwarc refused the next header: skip to the one after it
                    resume, problems = _skip_bad(stream, end, n + 1, error)
                    yield from problems
            elif whole and _digest_ok(held, data[end - start - 4 - held.length : end - start - 4]):
                # The record is intact (its block digest says so): what follows it is the damage.
                yield held.n, held.item
                resume, problems = _skip_bad(stream, end, n + 1, error or "not a record header")
                yield from problems
            else:
                found, _, _ = _find_header(stream, held.start + 1)
                if found is not None:
                    why = f"its Content-Length ({held.length}) does not lead to the next record header"
                    if whole and found < end:
                        why = (
                            f"the next record header starts inside its declared block of {held.length} bytes"
                        )
                    yield held.n, Problem("content_length_mismatch", why)
                    resume = found
                elif not whole or stream.error is not None:
                    truncated = True
                    yield held.n, Problem("truncated_file", "the file ends inside this record")
                else:
                    yield (
                        held.n,
                        Problem(
                            "content_length_mismatch",
                            f"{len(rest)} bytes follow its declared block of {held.length} bytes and are not a record",
                        ),
                    )
        else:
            start, data = stream.since(resumed_at)
            if error is not None:
                resume, problems = _skip_bad(stream, resumed_at, n + 1, error)
                if n == 0 and resume is None:
                    yield None, Problem("not_a_warc", f"no WARC record in the file ({error})")
                    return
                yield from problems
            elif data.strip():
                if n == 0:
                    yield None, Problem("not_a_warc", "no WARC record in the file")
                    return
                truncated = True
                yield (
                    n + 1,
                    Problem("truncated_file", f"{len(data)} bytes after record {n} are not a whole record"),
                )
        if resume is None:
            break
        resumed_at = resume
        start, data = stream.since(resume)
        source = _Replay(stream, resume, data)
    if n == 0 and stream.pos == 0 and stream.error is None:
        yield None, Problem("empty_file", "the file holds no WARC records")
    elif stream.error is not None and not truncated:
        yield n + 1, Problem("truncated_file", f"after record {n}: {stream.error}")


def _digest_ok(held: _Held, block: bytes) -> bool:
    """Whether a record's block matches its ``WARC-Block-Digest`` (sha1, base32), when it has one."""
    if not held.digest or len(block) != held.length:
        return False
    algo, _, value = held.digest.partition(":")
    if algo.lower() != "sha1":
        return False
    return base64.b32encode(hashlib.sha1(block).digest()).decode() == value.strip().upper()


def _skip_bad(stream: InflatedStream, at: int, number: int, error: str) -> tuple[int | None, list[Item]]:
    """A header fastwarc refused at ``at``: where the next one starts, and the problem to report."""
    found, start, data = _find_header(stream, at + 1)
    size = (found if found is not None else start + len(data)) - at
    detail = f"{size} bytes from byte {at} on are not a readable WARC record ({error})"
    return found, [(number, Problem("bad_warc_record", detail))]


def _find_header(stream: InflatedStream, after: int) -> tuple[int | None, int, bytes]:
    """The offset of the first record header at or after ``after`` (reading on as needed),
    with the bytes from ``after`` on that were looked at."""
    while True:
        start, data = stream.since(after)
        m = _HEADER.search(data)
        if m is not None:
            return start + m.start(1), start, data
        if stream.eof or len(data) > _HISTORY_CAP:
            return None, start, data
        stream.read(CHUNK)


def _record_end(held: _Held, data_start: int, data: bytes) -> int | None:
    """Where a held record ends by its Content-Length (None when its header is not in view)."""
    i = held.start - data_start
    if i < 0:
        return None
    head = data.find(b"\r\n\r\n", i)
    return None if head < 0 else data_start + head + 4 + held.length + 4


class _Short(Problem):
    """A record whose block ends before its Content-Length: truncated, unless another record follows."""

    def __init__(self, missing: int):
        super().__init__("truncated_file", f"{missing} bytes of the declared block are missing")
        self.missing = missing


def _record_item(rec: Any, kind: str) -> Any:
    from fastwarc.warc import WarcRecordType

    rtype = rec.record_type
    wanted = WarcRecordType.conversion if kind == "wet" else WarcRecordType.response
    if rtype != wanted:
        return Skipped(str(rtype))
    block = rec.reader.read()
    if len(block) < rec.content_length:
        return _Short(rec.content_length - len(block))
    headers = rec.headers
    base = {
        "url": (headers.get("WARC-Target-URI") or "").strip("<>") or None,
        "warc_record_id": headers.get("WARC-Record-ID"),
        "warc_date": headers.get("WARC-Date"),
    }
    if kind == "wet":
        lang = headers.get("WARC-Identified-Content-Language")
        rec_out = {"text": decode(block), **base, "content_type": "text/plain", "charset": "utf-8"}
        if lang:
            rec_out["warc_language"] = lang
        return rec_out
    return _http_response(block, base, headers.get("WARC-Identified-Payload-Type"))


def _http_response(block: bytes, base: dict[str, Any], identified: str | None) -> Any:
    cut = block.find(b"\r\n\r\n", 0, HEAD_BYTES)
    sep = 4
    if cut < 0:
        cut, sep = block.find(b"\n\n", 0, HEAD_BYTES), 2
    if cut < 0:
        return Problem("bad_http_header", "no end of the HTTP header in the first 64 KiB", _head(block))
    lines = block[:cut].decode("latin-1").split("\n")
    status = _STATUS.fullmatch(lines[0].strip().encode("latin-1"))
    if status is None:
        return Problem("bad_http_header", f"not an HTTP status line: {lines[0][:200]!r}", _head(block))
    fields: dict[str, str] = {}
    for line in lines[1:]:  # browsers ignore a malformed header line; so does this
        name, colon, value = line.partition(":")
        if colon and name.strip() and " " not in name.strip():
            fields[name.strip().lower()] = value.strip()
    if int(status.group(1)) != 200:
        return Skipped("non_200")
    media, charset = parse_content_type(fields.get("content-type") or "")
    if not media and identified:
        media = identified.split(";")[0].strip().lower()
    if media not in HTML_TYPES:
        return Skipped("non_html")
    body = block[cut + sep :]
    try:
        body = decode_body(body, fields.get("transfer-encoding", ""), fields.get("content-encoding", ""))
    except ValueError as e:
        return Problem("bad_content_encoding", str(e))
    return {"html": body, **base, "content_type": media, "http_charset": charset}


def _head(block: bytes) -> str:
    return block[:512].decode("latin-1")


def parse_content_type(value: str) -> tuple[str, str | None]:
    """``text/html; charset=UTF-8`` -> (``text/html``, ``UTF-8``)."""
    parts = value.split(";")
    media = parts[0].strip().lower()
    charset = None
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset" and v.strip().strip("\"'"):
            charset = v.strip().strip("\"'")
    return media, charset


def decode_body(body: bytes, transfer: str, encoding: str) -> bytes:
    """Undo chunked transfer coding and gzip/deflate/br content coding (as stored by the crawler)."""
    if "chunked" in transfer.lower():
        body = _dechunk(body)
    for coding in [c.strip().lower() for c in encoding.split(",") if c.strip()][::-1]:
        try:
            if coding in ("gzip", "x-gzip"):
                body = zlib.decompress(body, wbits=47)
            elif coding == "deflate":
                try:
                    body = zlib.decompress(body)
                except zlib.error:
                    body = zlib.decompress(body, wbits=-15)  # raw deflate, as some servers send
            elif coding == "br":
                import brotli

                body = brotli.decompress(body)
            elif coding != "identity":
                raise ValueError(f"unknown Content-Encoding {coding!r}")
        except ImportError as e:
            raise ValueError("Content-Encoding br needs the brotli package") from e
        except Exception as e:
            if isinstance(e, ValueError) and "Content-Encoding" in str(e):
                raise
            raise ValueError(f"Content-Encoding {coding}: {type(e).__name__}: {e}") from e
    return body


def _dechunk(body: bytes) -> bytes:
    out: list[bytes] = []
    i = 0
    while True:
        eol = body.find(b"\r\n", i)
        if eol < 0:
            raise ValueError("chunked body: a chunk size line has no end")
        try:
            size = int(body[i:eol].split(b";")[0].strip(), 16)
        except ValueError:
            raise ValueError(f"chunked body: bad chunk size {body[i:eol][:40]!r}") from None
        if size == 0:
            return b"".join(out)
        start = eol + 2
        if start + size > len(body):
            raise ValueError("chunked body: a chunk runs past the end of the record")
        out.append(body[start : start + size])
        i = start + size + 2
