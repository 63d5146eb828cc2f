"""Ingest of web formats: WARC crawls, WET text, HTML pages; damaged files; URL filtering.

The crawls are written in the test with warcio (tests/fixtures/make_crawl.py): real page text
from the shared web sample when it is there, a few handwritten pages otherwise.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from conftest import SHARED_CORPORA
from make_crawl import CrawlWriter, read_pages, write_warc, write_wet

from pipeline.dataset import Dataset
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.sources import detect_format
from pipeline.sources.html import html5_charset
from pipeline.stage import run_stage

WEB_SAMPLE = SHARED_CORPORA / "web" / "cc_main_2019-30_sample.jsonl"

PAGES = [
    (
        "http://bakery.example.com/recipes/sourdough",
        "How to bake sourdough bread at home\n"
        "Sourdough bread needs only flour, water and salt, and a starter that you feed every day. "
        "Mix the dough in the evening, let it rise overnight in a cool kitchen, and shape it in the morning.\n"
        "Bake it in a hot oven, covered for the first twenty minutes, so that the crust stays thin and crisp.",
    ),
    (
        "https://www.trails.example.org/walks/lake-loop",
        "The lake loop walk\n"
        "The path follows the northern shore of the lake for about six kilometres and climbs gently to a "
        "viewpoint above the old mill. Allow two hours, and bring water: there is no café on the way.\n"
        "In spring the meadows by the water are full of orchids, and herons nest in the reeds near the boathouse.",
    ),
    (
        "http://news.example.net/2019/07/council-budget",
        "Council approves the new budget\n"
        "The town council approved next year's budget on Tuesday evening after a debate of almost four hours. "
        "Spending on schools rises by three per cent, and the library will open on Sundays from September.\n"
        "Residents can read the full budget on the council's website or at the town hall.",
    ),
]


def page_dicts(pages=PAGES, date="2019-07-17T12:15:59Z"):
    return [{"id": f"p{i}", "text": t, "url": u, "date": date} for i, (u, t) in enumerate(pages)]


def ingest(root, *sources, **kw):
    cfg = IngestConfig(sources=[SourceConfig(**s) for s in sources], **kw)
    return run_stage(IngestStage(), cfg, root, {})


def docs_of(result):
    return Dataset(result.path).head(100_000).to_pylist()


def rejects_of(result):
    return Dataset(result.path).head(100_000, view="rejects").to_pylist()


def html_page(title: str, body: str, head: str = "") -> str:
    paras = "".join(f"<p>{p}</p>" for p in body.split("\n"))
    return (
        f"<!DOCTYPE html><html><head>{head}<title>{title}</title>"
        "<script>var tracking = {id: 42}; function go(){return 1;}</script></head>"
        "<body><nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
        f"<article><h1>{title}</h1>{paras}</article>"
        "<footer>Copyright 2019. All rights reserved.</footer></body></html>"
    )


def test_format_detection_by_extension():
    assert detect_format("s3://b/crawl/CC-MAIN-0001.warc.gz") == "warc"
    assert detect_format(Path("/x/a.warc")) == "warc"
    assert detect_format("CC-MAIN-0001.warc.wet.gz") == "wet"
    assert detect_format("page.HTML") == "html" and detect_format("p.htm.gz") == "html"
    assert detect_format("x.jsonl.gz") == "jsonl"


@pytest.mark.slow
def test_crawl_of_real_pages_becomes_documents(tmp_path):
    if not WEB_SAMPLE.is_file():
        pytest.skip(f"{WEB_SAMPLE} is absent: the shared corpora are optional")
    pages = list(read_pages(WEB_SAMPLE, 120))
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    written = write_warc(crawl / "crawl-00000.warc.gz", pages[:60], seed="a")
    written += write_warc(crawl / "crawl-00001.warc.gz", pages[60:], seed="b")
    r = ingest(tmp_path / "root", {"path": str(crawl / "*.warc.gz")})

    # Every record is accounted for: documents, rejects, or skipped by kind.
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    kinds: Counter = Counter()
    for f in sorted(crawl.glob("*.warc.gz")):
        for rec in ArchiveIterator(f.open("rb")):
            if rec.record_type != WarcRecordType.response:
                kinds[str(rec.record_type)] += 1
            elif rec.http_headers.status_code != 200:
                kinds["non_200"] += 1
            elif rec.http_content_type not in ("text/html", "application/xhtml+xml"):
                kinds["non_html"] += 1
            else:
                kinds["page"] += 1
    pages_n = kinds.pop("page")
    assert pages_n == len(written) == 120
    assert r.stats["skipped"] == dict(kinds) and {"request", "metadata", "warcinfo", "non_200"} <= set(kinds)
    c = r.counts
    assert c["rows_in"] == pages_n and c["rows_out"] + c["rows_rejected"] == pages_n
    assert set(c["rejected_by_reason"]) <= {"ingest.no_text_extracted"}
    assert c["rows_out"] >= 110

    docs = {json.loads(d["meta"])["warc_record_id"]: d for d in docs_of(r)}
    by_id = {w["record_id"]: (w, p) for w, p in zip(written, pages)}
    legacy = found = 0
    for rid, d in docs.items():
        w, page = by_id[rid]
        meta = json.loads(d["meta"])
        assert d["url"] == page["url"] and meta["warc_date"] == page["date"]
        assert meta["content_type"] in ("text/html", "application/xhtml+xml")
        assert set(meta) == {"warc_record_id", "warc_date", "content_type", "charset"}
        assert "\ufffd" not in d["text"]
        if w["declared"] != "none":  # the declared charset is used, as browsers read its label
            assert meta["charset"] == html5_charset(w["charset"]), (w, meta)
        # The page's longest line is in the text (resiliparse's main-content heuristic keeps only
        # the header of a few short pages, so not every page).
        longest = max(page["text"].split("\n"), key=len).strip()
        found += unicodedata.normalize("NFC", longest)[:200] in d["text"]
        legacy += w["charset"] != "utf-8"
    assert legacy >= 15
    assert found >= 0.8 * len(docs)
    assert {"http", "meta"} <= set(r.stats["charset_from"])
    assert sum(r.stats["charset_from"].values()) == c["rows_in"] - c["rows_rejected"]

    again = ingest(tmp_path / "root2", {"path": str(crawl / "*.warc.gz")})
    assert (
        Dataset(again.path).manifest["views"]["data"]["shards"]
        == Dataset(r.path).manifest["views"]["data"]["shards"]
    )


def _crawl_bytes(pages, seed="t", gz=True, other=0) -> bytes:
    buf = io.BytesIO()
    w = CrawlWriter(buf, "t.warc.gz", seed, gzip_records=gz)
    for p in pages:
        body = html_page(p["text"].split("\n")[0], p["text"]).encode("utf-8")
        w.fetch(
            p["url"],
            p["date"],
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
            body,
            "text/html",
        )
    return buf.getvalue()


def _set_content_length(data: bytes, record_no_of_response: int, new: int) -> bytes:
    """Rewrite the WARC Content-Length of the n-th response record of an uncompressed WARC."""
    at = -1
    for _ in range(record_no_of_response):
        at = data.index(b"WARC-Type: response", at + 1)
    start = data.index(b"Content-Length: ", at)
    end = data.index(b"\r\n", start)
    old = int(data[start + 16 : end])
    return data[:start] + b"Content-Length: %d" % (old + new) + data[end:]


def test_damaged_files_keep_what_comes_before_and_name_the_damage(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    pages = page_dicts(PAGES * 4)  # 12 pages after a warcinfo: request, response, metadata each

    gz = _crawl_bytes(pages)
    (raw / "truncated.warc.gz").write_bytes(gz[: int(len(gz) * 0.6)])  # cut inside a gzip member

    plain = _crawl_bytes(pages, gz=False)
    lying = _set_content_length(plain, 3, +400)  # the 3rd response swallows the next record's start
    lying = _set_content_length(lying, 8, -300)  # the 8th stops short of its end
    (raw / "lying.warc").write_bytes(lying)

    at = plain.index(b"WARC/1.0", len(plain) // 2)  # junk written over a record boundary
    (raw / "junk.warc").write_bytes(plain[:at] + b"\x00junk" * 100 + plain[at:])
    (raw / "page.warc").write_text(html_page("Not a crawl", PAGES[0][1]))

    (raw / "empty.warc.gz").write_bytes(b"")
    (raw / "empty2.warc").write_bytes(gzip.compress(b""))

    buf = io.BytesIO()
    w = CrawlWriter(buf, "odd.warc.gz", "odd")
    date = "2019-07-17T12:00:00Z"
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 20
    w.fetch("http://a.example/img", date, "200 OK", [("Content-Type", "text/html")], jpeg, None)
    koi8 = html_page(
        "Погода в Москве",
        "Завтра в Москве ожидается облачная погода с прояснениями, без осадков. "
        "Температура воздуха днём составит около двадцати градусов тепла.",
    ).encode("koi8-r")
    w.fetch("http://b.example/ru", date, "200 OK", [("Content-Type", "text/html")], koi8, "text/html")
    latin = html_page(
        "Crème brûlée à la française",
        "Préchauffez le four à 150 degrés. Fouettez les jaunes d'œufs avec le sucre, ajoutez la crème "
        "chaude et versez dans des ramequins. Faites cuire au bain-marie pendant quarante minutes.",
    ).encode("cp1252")
    w.fetch("http://c.example/fr", date, "200 OK", [("Content-Type", "text/html")], latin, "text/html")
    w.fetch("http://d.example/x", date, "2OO OK", [("Content-Type", "text/html")], b"<p>hi</p>", "text/html")
    empty_page = b"<html><head><script>var x = 1;</script></head><body></body></html>"
    w.fetch(
        "http://e.example/blank", date, "200 OK", [("Content-Type", "text/html")], empty_page, "text/html"
    )
    chunked = (
        b"".join(
            b"%x\r\n%s\r\n" % (len(part), part)
            for part in [gzip.compress(html_page("Chunked", PAGES[0][1]).encode(), mtime=0)]
        )
        + b"0\r\n\r\n"
    )
    w.fetch(
        "http://f.example/chunked",
        date,
        "200 OK",
        [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")],
        chunked,
        "text/html",
    )
    (raw / "odd.warc.gz").write_bytes(buf.getvalue())

    r = ingest(tmp_path / "root", {"path": str(raw)})
    c = r.counts
    assert c["rows_in"] == c["rows_out"] + c["rows_rejected"]
    rej = rejects_of(r)
    by_file: dict[str, Counter] = {}
    for x in rej:
        by_file.setdefault(Path(x["source_file"]).name, Counter())[x["reason"]] += 1
    docs = docs_of(r)
    per_file = Counter(Path(d["source_file"]).name for d in docs)

    # Truncated gzip member: the pages before the cut are documents, the cut is one reject.
    assert by_file["truncated.warc.gz"] == {"ingest.truncated_file": 1}
    assert 4 <= per_file["truncated.warc.gz"] < 12
    trunc = next(x for x in rej if x["source_file"].endswith("truncated.warc.gz"))
    assert trunc["source_record"] == 1 + 3 * per_file["truncated.warc.gz"] + 1

    # Lying Content-Lengths: those two records are rejected, every other page is read.
    assert by_file["lying.warc"] == {"ingest.content_length_mismatch": 2}
    assert per_file["lying.warc"] == 10
    lied = sorted(x["source_record"] for x in rej if x["source_file"].endswith("lying.warc"))
    assert lied == [3 * 3, 3 * 8]  # the responses of pages 3 and 8

    # Junk between two records: reported, and every page on both sides of it read.
    assert by_file["junk.warc"] == {"ingest.bad_warc_record": 1}
    assert per_file["junk.warc"] == 12
    assert by_file["page.warc"] == {"ingest.not_a_warc": 1}

    # Empty files (plain and an empty gzip stream).
    assert by_file["empty.warc.gz"] == {"ingest.empty_file": 1}
    assert by_file["empty2.warc"] == {"ingest.empty_file": 1}

    # Odd pages: binary labelled text/html, a bad status line, a page with no text.
    assert by_file["odd.warc.gz"] == {
        "ingest.undecodable_html": 1,
        "ingest.bad_http_header": 1,
        "ingest.no_text_extracted": 1,
    }
    odd = {d["url"]: d for d in docs if d["source_file"].endswith("odd.warc.gz")}
    assert set(odd) == {"http://b.example/ru", "http://c.example/fr", "http://f.example/chunked"}
    assert "облачная погода" in odd["http://b.example/ru"]["text"]  # KOI8-R, no declaration anywhere
    assert json.loads(odd["http://b.example/ru"]["meta"])["charset"] == "koi8-r"
    assert "Préchauffez le four" in odd["http://c.example/fr"]["text"]
    assert json.loads(odd["http://c.example/fr"]["meta"])["charset"] == "cp1252"
    assert "Sourdough bread needs only flour" in odd["http://f.example/chunked"]["text"]
    assert r.stats["charset_from"]["detected"] >= 2
    binary = next(x for x in rej if x["reason"] == "ingest.undecodable_html")
    assert json.loads(binary["text"])["url"] == "http://a.example/img"


def test_wet_and_html_directories(tmp_path):
    pages = page_dicts()
    wet = tmp_path / "crawl.warc.wet.gz"
    write_wet(wet, pages, seed="w")
    site = tmp_path / "site"
    (site / "blog").mkdir(parents=True)
    (site / "index.html").write_text(html_page("Welcome", PAGES[0][1]), encoding="utf-8")
    (site / "blog" / "walk.htm").write_bytes(
        html_page("Lake", PAGES[1][1], '<meta charset="iso-8859-1">').encode("cp1252")
    )
    (site / "style.css").write_text("body { color: red }")
    (site / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    r = ingest(
        tmp_path / "root",
        {"path": str(wet)},
        {"path": str(site), "format": "html", "name": "site", "extractor": "trafilatura"},
    )
    assert r.counts["rows_rejected"] == 0 and r.stats["skipped"] == {"warcinfo": 1}
    docs = docs_of(r)
    wet_docs = [d for d in docs if d["source"] != "site"]
    assert sorted(d["text"] for d in wet_docs) == sorted(p["text"] for p in pages)
    assert {json.loads(d["meta"])["content_type"] for d in wet_docs} == {"text/plain"}
    html_docs = sorted((d for d in docs if d["source"] == "site"), key=lambda d: d["source_file"])
    assert [Path(d["source_file"]).name for d in html_docs] == ["walk.htm", "index.html"]
    assert "there is no café on the way" in html_docs[0]["text"]
    assert json.loads(html_docs[0]["meta"])["charset"] == "cp1252"
    assert "Home" not in html_docs[1]["text"] and "Copyright" not in html_docs[1]["text"]


def test_url_filter_rejects_name_rule_and_entry(tmp_path):
    lists = tmp_path / "blocklist.txt"
    lists.write_text("# UT1-style list\nnews.example.net\ntrails.example.org/walks/lake-loop\n")
    words = tmp_path / "words.txt"
    words.write_text("casino\n")
    pages = page_dicts(
        [
            *PAGES,
            ("http://best-casino.example.com/play", "Play now.\n" + PAGES[0][1]),
            ("http://freexxxvideos.example/", "Videos.\n" + PAGES[0][1]),
            ("http://sub.bakery.example.com/recipes", PAGES[0][1]),
        ]
    )
    crawl = tmp_path / "c.warc.gz"
    crawl.write_bytes(_crawl_bytes(pages))
    r = ingest(
        tmp_path / "root",
        {"path": str(crawl)},
        url_filter={
            "blocklist_files": [str(lists)],
            "banned_words_files": [str(words)],
            "banned_subwords": ["xxx"],
            "blocked_domains": ["sub.bakery.example.com"],
        },
    )
    rej = {x["reason"]: x for x in rejects_of(r)}
    assert set(rej) == {
        "ingest.url_filter.blocked_domain",
        "ingest.url_filter.blocked_url",
        "ingest.url_filter.banned_word",
        "ingest.url_filter.banned_subword",
    }
    assert r.counts["rejected_by_reason"]["ingest.url_filter.blocked_domain"] == 2
    assert rej["ingest.url_filter.banned_word"]["value"] == "casino"
    assert rej["ingest.url_filter.banned_subword"]["value"] == "xxx"
    assert rej["ingest.url_filter.blocked_url"]["value"] == "trails.example.org/walks/lake-loop"
    detail = json.loads(rej["ingest.url_filter.banned_word"]["detail"])
    assert detail == {"rule": "banned_word", "entry": "casino", "url": "http://best-casino.example.com/play"}
    assert [d["url"] for d in docs_of(r)] == ["http://bakery.example.com/recipes/sourdough"]
    # A changed list file is a new ingest (its content is part of the identity).
    lists.write_text("news.example.net\n")
    again = ingest(tmp_path / "root", {"path": str(crawl)}, url_filter={"blocklist_files": [str(lists)]})
    assert not again.cached and again.counts["rejected_by_reason"] == {"ingest.url_filter.blocked_domain": 1}


def test_extractor_is_a_per_source_choice(tmp_path):
    crawl = tmp_path / "c.warc.gz"
    crawl.write_bytes(_crawl_bytes(page_dicts()))
    out = {}
    for extractor in ("resiliparse", "trafilatura"):
        r = ingest(tmp_path / extractor, {"path": str(crawl), "extractor": extractor})
        out[extractor] = {d["url"]: d["text"] for d in docs_of(r)}
        assert len(out[extractor]) == 3
        for text in out[extractor].values():
            assert "All rights reserved" not in text and "tracking" not in text
    for url, text in out["trafilatura"].items():
        body = next(t for u, t in PAGES if u == url).split("\n")[1]
        assert body in text and body in out["resiliparse"][url]
    with pytest.raises(ValueError, match="extractor"):
        SourceConfig(path="x.warc", extractor="justext")
