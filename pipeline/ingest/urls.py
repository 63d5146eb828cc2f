"""URL filtering at ingest, as C4, RefinedWeb and datatrove's URLFilter do it.

Why at ingest rather than as an annotate signal: a blocked page is never worth extracting (HTML
extraction is the most expensive step of reading a crawl), and a blocklist is a property of the
source, not a quality threshold to tune per run. Changing a list re-runs ingest (its files'
content is part of ingest's identity) and everything after it.

Rules, in order; the first that matches is the reject reason ``ingest.url_filter.<rule>``, its
``value`` the matching entry, ``detail`` the rule, the entry and the URL:

* ``blocked_url``: the URL is on the list (compared without scheme, ``www.``, fragment or a
  trailing slash, host lowercased);
* ``blocked_domain``: the host is a listed domain or a subdomain of one (``example.com`` blocks
  ``www.example.com`` and ``a.b.example.com``);
* ``banned_word``: a listed word is one of the URL's words (host and path split at every
  character that is not a letter or digit, lowercased), e.g. ``casino`` in
  ``http://best-casino.example/``;
* ``banned_subword``: a listed string occurs anywhere in the lowercased URL (for words glued to
  others, e.g. ``xxx`` in ``freexxxvideos``).

Lists come from the config (``blocked_domains``, ``blocked_urls``, ``banned_words``,
``banned_subwords``) and from files (``blocklist_files``: one entry a line, ``#`` comments; a line
with a ``/`` is a URL, any other a domain, so the UT1 blacklists' ``domains`` and ``urls`` files
load as they are; ``banned_words_files``: one word a line). No list ships with tokenmill: which
sites to block is a decision about the data, made where the data is chosen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError
from ..hashing import sha256_file

_WORDS = re.compile(r"[^\w]+|_+")


class UrlFilterConfig(BaseModel):
    """Which URLs ingest rejects before reading their page (see :mod:`pipeline.ingest.urls`)."""

    model_config = ConfigDict(extra="forbid")

    blocked_domains: list[str] = Field(
        default_factory=list, description="Domains blocked with their subdomains"
    )
    blocked_urls: list[str] = Field(default_factory=list, description="URLs blocked exactly")
    blocklist_files: list[str] = Field(
        default_factory=list, description="Files of blocked domains and URLs, one a line (UT1 format)"
    )
    banned_words: list[str] = Field(
        default_factory=list, description="Words that block a URL containing them"
    )
    banned_words_files: list[str] = Field(
        default_factory=list, description="Files of banned words, one a line"
    )
    banned_subwords: list[str] = Field(
        default_factory=list, description="Strings that block a URL containing them anywhere"
    )

    @property
    def enabled(self) -> bool:
        return any(
            (
                self.blocked_domains,
                self.blocked_urls,
                self.blocklist_files,
                self.banned_words,
                self.banned_words_files,
                self.banned_subwords,
            )
        )

    def identity(self) -> dict[str, str]:
        """The content of the list files (their paths are in the config already)."""
        out = {}
        for f in [*self.blocklist_files, *self.banned_words_files]:
            p = Path(f).expanduser()
            if not p.is_file():
                raise ConfigError(f"ingest.url_filter: list file {f!r} does not exist")
            out[f] = sha256_file(p)
        return out


@dataclass(frozen=True)
class Blocked:
    rule: str  # blocked_url | blocked_domain | banned_word | banned_subword
    entry: str
    url: str


def _url_key(url: str) -> str:
    """A URL compared without scheme, ``www.``, fragment or trailing slash; host lowercased."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    port = f":{parts.port}" if parts.port else ""
    query = f"?{parts.query}" if parts.query else ""
    return f"{host}{port}{parts.path.rstrip('/')}{query}"


def _host(url: str) -> str:
    try:
        return (urlsplit(url if "://" in url else "http://" + url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def _lines(path: str) -> list[str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"ingest.url_filter: list file {path!r} does not exist")
    out = []
    with p.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


class UrlFilter:
    """The compiled lists of a :class:`UrlFilterConfig`; :meth:`check` is cheap per URL."""

    def __init__(self, cfg: UrlFilterConfig):
        domains = {d.strip().lower().removeprefix("www.").rstrip(".") for d in cfg.blocked_domains}
        urls = {_url_key(u): u for u in cfg.blocked_urls}
        for f in cfg.blocklist_files:
            for entry in _lines(f):
                if "/" in entry:
                    urls.setdefault(_url_key(entry), entry)
                else:
                    domains.add(entry.lower().removeprefix("www.").rstrip("."))
        self.domains = {d for d in domains if d}
        self.urls = urls
        words = [w.strip().lower() for w in cfg.banned_words]
        for f in cfg.banned_words_files:
            words += [w.lower() for w in _lines(f)]
        self.words = {w for w in words if w}
        subwords = sorted({s.strip().lower() for s in cfg.banned_subwords if s.strip()})
        self.subwords = re.compile("|".join(map(re.escape, subwords))) if subwords else None

    def check(self, url: Any) -> Blocked | None:
        """The first rule a URL breaks, or None (also for a record without a URL)."""
        if not isinstance(url, str) or not url:
            return None
        if self.urls:
            try:
                key = _url_key(url)
            except ValueError:  # not a parseable URL (e.g. a broken IPv6 host): no exact match
                key = ""
            if key in self.urls:
                return Blocked("blocked_url", self.urls[key], url)
        host = _host(url)
        if self.domains and host:
            labels = host.split(".")
            for i in range(len(labels)):
                candidate = ".".join(labels[i:])
                if candidate in self.domains:
                    return Blocked("blocked_domain", candidate, url)
        lower = url.lower()
        if self.words:
            for word in _WORDS.split(lower):
                if word in self.words:
                    return Blocked("banned_word", word, url)
        if self.subwords is not None:
            m = self.subwords.search(lower)
            if m:
                return Blocked("banned_subword", m.group(0), url)
        return None
