"""HTML pages to text: the charset, then the main text by trafilatura or resiliparse.

**Charset.** The bytes are decoded by the first of these in which they are valid: a byte-order
mark; the charset of the HTTP ``Content-Type`` header; a ``<meta charset>`` or ``<meta
http-equiv>`` in the first 4 KiB; UTF-8; the charset uchardet detects (resiliparse's
``detect_encoding``). Labels are read the way browsers read them (WHATWG: ``iso-8859-1`` and
``ascii`` mean windows-1252). When none is valid throughout (a page with a stray bad byte), a
declared charset with at most 1 invalid byte in 200 is used, else the detected one, and the
invalid sequences are replaced by U+FFFD and counted (``stats.utf8_repaired``): the record is
kept. ``meta.charset`` is the charset used; ``stats.charset_from`` counts where it came from.

**Not HTML.** A payload with NUL bytes (outside UTF-16), or where more than 10% of the first
4 KiB are control characters, is binary whatever its label says: ``undecodable_html``.

**Extraction** (``ingest.sources[].extractor``):

* ``resiliparse`` (default; DCLM's choice): ``extract_plain_text(main_content=True,
  alt_texts=False, links=False, form_fields=False, noscript=False, comments=False,
  list_bullets=False, preserve_formatting=True)``: the main-content heuristic, block structure
  kept as newlines, no image alt texts, link targets, form fields or user comments.
* ``trafilatura`` (FineWeb's and datatrove's choice): ``extract(favor_precision=True,
  include_comments=False, include_tables=True, include_links=False, include_images=False,
  deduplicate=False)``: datatrove's settings except deduplication, which trafilatura does with a
  process-wide cache of paragraphs already seen, so that a page's text would depend on which
  pages the same process read before it; removing repeated text across documents is the dedup
  stage's job.

Measured on the same records by ``benchmarks/warc_vs_datatrove.py`` (README, Performance).
A page with no text left is ``no_text_extracted``.
"""

from __future__ import annotations

import codecs
import re
import threading
from typing import Any, Literal

from .records import Problem

Extractor = Literal["trafilatura", "resiliparse"]
DEFAULT_EXTRACTOR: Extractor = "resiliparse"
PRESCAN_BYTES = 4_096
MAX_INVALID_SHARE = 1 / 200  # a declared charset with more invalid bytes than this is wrong
_META = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""",
    re.IGNORECASE,
)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
_trial = threading.local()


def _count_invalid(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)  # registered for decoding only
    _trial.n = getattr(_trial, "n", 0) + 1
    return "\ufffd", err.end


codecs.register_error("tokenmill_trial", _count_invalid)


def html5_charset(label: str | None) -> str | None:
    """A charset label as browsers read it, as a Python codec name (None if unknown)."""
    if not label:
        return None
    from resiliparse.parse.encoding import map_encoding_to_html5

    name = map_encoding_to_html5(label.strip().lower(), fallback_utf8=False)
    if name is None:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _fits(data: bytes, charset: str) -> bool:
    _trial.n = 0
    data.decode(charset, errors="tokenmill_trial")
    return _trial.n <= max(1, len(data) * MAX_INVALID_SHARE)


def looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    return len(_CONTROL.findall(head)) > len(head) / 10


def _strict(data: bytes, charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        return data.decode(charset)
    except UnicodeDecodeError:
        return None


def decode_html(data: bytes, declared: str | None) -> tuple[str, str, str] | Problem:
    """(text, charset used, where it came from) or why the bytes are not a readable page."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(name, errors="tokenmill_repair"), name, "bom"
    head = data[:PRESCAN_BYTES]
    if looks_binary(head):
        return Problem("undecodable_html", "the payload is binary (NUL or control bytes), not an HTML page")
    candidates: list[tuple[str | None, str]] = [(html5_charset(declared), "http")]
    m = _META.search(head)
    if m:
        candidates.append((html5_charset(m.group(1).decode("ascii", "replace")), "meta"))
    candidates.append(("utf-8", "utf-8"))
    for charset, origin in candidates:
        text = _strict(data, charset)
        if text is not None and charset is not None:
            return text, charset, origin
    from resiliparse.parse.encoding import detect_encoding

    detected = html5_charset(detect_encoding(data)) or "cp1252"
    strict = _strict(data, detected)
    if strict is not None:
        return strict, detected, "detected"
    # Nothing decodes cleanly: a declared charset with a few bad bytes, repaired; else the guess.
    for charset, origin in candidates[:-1]:
        if charset is not None and _fits(data, charset):
            return data.decode(charset, errors="tokenmill_repair"), charset, origin
    return data.decode(detected, errors="tokenmill_repair"), detected, "detected"


def extract(html: str, extractor: Extractor) -> str:
    """The main text of a page (possibly empty) with the settings documented above."""
    if extractor == "trafilatura":
        import trafilatura

        return (
            trafilatura.extract(
                html,
                favor_precision=True,
                include_comments=False,
                include_tables=True,
                include_links=False,
                include_images=False,
                deduplicate=False,
            )
            or ""
        )
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(
        html,
        preserve_formatting=True,
        main_content=True,
        list_bullets=False,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
        comments=False,
    )


def to_text(rec: dict[str, Any], extractor: Extractor) -> tuple[dict[str, Any], str] | Problem:
    """An HTML record (``html`` bytes, ``http_charset``) as a text record, and where its charset came from."""
    decoded = decode_html(rec["html"], rec.get("http_charset"))
    if isinstance(decoded, Problem):
        return decoded
    html, charset, origin = decoded
    try:
        text = extract(html, extractor)
    except Exception as e:  # an extractor failing on one page must not stop the file
        return Problem("extraction_failed", f"{extractor}: {type(e).__name__}: {e}")
    if not text.strip():
        return Problem(
            "no_text_extracted", f"{extractor} found no main text in {len(html)} characters of HTML"
        )
    out = {k: v for k, v in rec.items() if k not in ("html", "http_charset")}
    out["text"] = text
    out["charset"] = charset
    return out, origin
