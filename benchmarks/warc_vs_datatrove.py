"""tokenmill's WARC ingest against datatrove's WarcReader + Trafilatura: documents, text agreement, speed.

Both read the same WARC files in one run. datatrove runs as its pipelines do: ``WarcReader``
(warcio; ``response`` records whose ``WARC-Identified-Payload-Type`` is HTML, decoded as UTF-8
or by cchardet's guess) piped into ``Trafilatura()`` (its defaults: ``favour_precision=True``,
``include_comments=False``, ``deduplicate=True``, a 1 s timeout per page in a sandbox process).
tokenmill runs its ``ingest`` stage (Parquet shards, rejects, manifest and validation included)
once per extractor: ``trafilatura`` (the agreement goal) and the default (the speed goal).

**Agreement** is over the union of documents either side outputs from HTTP 200 responses,
matched by WARC-Record-ID: the share whose two texts have a character-level similarity of at
least 0.9, where similarity is 1 - Levenshtein distance / length of the longer text
(rapidfuzz's ``normalized_similarity``), after both texts get ingest's normalisation (NFC,
``\\n`` line ends). A document only one side outputs counts as a disagreement. datatrove also
extracts error pages (404, 301, 503 responses with an HTML body), which tokenmill skips by
design; they are counted apart (``datatrove_non_200``), not in the agreement.

**Speed**: documents out per second and compressed input MB per second by wall clock, the median
of ``--repeats`` runs of each side taking turns (a shared machine is noisy; ratios come from the
same run). ``speedup_vs_datatrove`` is datatrove's seconds over the default extractor's;
``cpu_speedup_vs_datatrove`` the same by CPU time (datatrove's extraction process included).

    python benchmarks/warc_vs_datatrove.py --input FILE.warc.gz [FILE.warc.gz ...] [--repeats 2]

Without ``--input`` it writes a crawl from the shared web sample with tests/fixtures/make_crawl.py
(697 pages in 2 files) in a temporary directory. Needs the bench extra (datatrove, rapidfuzz,
faust-cchardet, python-magic).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
WEB_SAMPLE = ROOT.parent / "shared" / "corpora" / "web" / "cc_main_2019-30_sample.jsonl"

import pyarrow.parquet as pq

from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.sources.html import DEFAULT_EXTRACTOR
from pipeline.sources.normalize import normalize_text
from pipeline.stage import run_stage

THRESHOLD = 0.9


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (datatrove extracts in a child)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_datatrove(paths: list[Path]) -> tuple[dict[str, str], float, float]:
    """WARC-Record-ID -> extracted text, wall and CPU seconds, as a datatrove pipeline reads them."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    out: dict[str, str] = {}
    t0, c0 = time.perf_counter(), cpu_seconds()
    for path in paths:
        reader = WarcReader(str(path.parent), glob_pattern=path.name)
        for doc in Trafilatura().run(reader.run()):
            out[doc.id] = doc.text
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def run_tokenmill(paths: list[Path], extractor: str, root: Path) -> tuple[dict[str, str], float, float, dict]:
    """WARC-Record-ID -> text of tokenmill's ingest stage, wall and CPU seconds, the stage's counts."""
    cfg = IngestConfig(sources=[SourceConfig(path=str(p), extractor=extractor) for p in paths])
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = run_stage(IngestStage(), cfg, root, {})
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    out: dict[str, str] = {}
    for shard in result.dataset.shard_paths():
        cols = pq.read_table(shard, columns=["text", "meta"]).to_pydict()
        for text, meta in zip(cols["text"], cols["meta"]):
            out[json.loads(meta)["warc_record_id"]] = text
    return out, seconds, cpu, result.counts


def ok_responses(paths: list[Path]) -> set[str]:
    """Record ids of the HTTP 200 responses (the records that can be documents at all)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = set()
    for path in paths:
        with path.open("rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
                if rec.http_headers.status_code == 200:
                    out.add(rec.record_id)
    return out


def agreement(a: dict[str, str], b: dict[str, str], pages: set[str]) -> tuple[float, int, int]:
    """(share of the union whose texts are similar, documents in both, documents in either)."""
    from rapidfuzz.distance import Levenshtein

    union = (set(a) | set(b)) & pages
    both = set(a) & set(b) & pages
    similar = sum(
        Levenshtein.normalized_similarity(normalize_text(a[k]), normalize_text(b[k])) >= THRESHOLD
        for k in both
    )
    return (similar / len(union) if union else 1.0), len(both), len(union)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", nargs="+", type=Path, help="WARC files (.warc or .warc.gz)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each side (median)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        paths = args.input
        if not paths:
            if not WEB_SAMPLE.is_file():
                sys.exit(
                    f"{WEB_SAMPLE}: absent; pass --input FILE.warc.gz (the shared corpora live in ../shared/corpora)"
                )
            from make_crawl import read_pages, write_warc

            pages = list(read_pages(WEB_SAMPLE))
            half = len(pages) // 2
            paths = [tmpdir / "crawl-00000.warc.gz", tmpdir / "crawl-00001.warc.gz"]
            write_warc(paths[0], pages[:half], seed="crawl-00000")
            write_warc(paths[1], pages[half:], seed="crawl-00001")
        for p in paths:
            if not p.is_file():
                sys.exit(f"{p}: no such file")
        mb = sum(p.stat().st_size for p in paths) / 1e6
        # Warm-up: imports (pyarrow, validation) on tokenmill's side happen once per process.
        run_tokenmill(paths[:1], DEFAULT_EXTRACTOR, tmpdir / "warm")

        # The three runs take turns, so that a burst of load on a shared machine hits all of them.
        runs: dict[str, list] = {"dt": [], "traf": [], "def": []}
        for i in range(args.repeats):
            runs["dt"].append(run_datatrove(paths))
            runs["traf"].append(run_tokenmill(paths, "trafilatura", tmpdir / f"traf{i}"))
            runs["def"].append(run_tokenmill(paths, DEFAULT_EXTRACTOR, tmpdir / f"default{i}"))
        dt, tm_traf, tm_def = runs["dt"][0][0], runs["traf"][0][0], runs["def"][0][0]
        traf_counts, def_counts = runs["traf"][0][3], runs["def"][0][3]
        assert all(r[0] == tm_def for r in runs["def"]), "tokenmill's output differs between runs"
        dt_s, traf_s, def_s = (statistics.median(r[1] for r in runs[k]) for k in ("dt", "traf", "def"))
        dt_cpu, traf_cpu, def_cpu = (statistics.median(r[2] for r in runs[k]) for k in ("dt", "traf", "def"))
    pages = ok_responses(paths)
    agree_traf, both_traf, union_traf = agreement(tm_traf, dt, pages)
    agree_def, both_def, union_def = agreement(tm_def, dt, pages)
    dt_other = len(set(dt) - pages)
    print(f"input: {len(paths)} files, {mb:.1f} MB compressed, {len(pages)} HTTP 200 responses")
    print(f"datatrove also extracted {dt_other} error pages (non-200 responses), which tokenmill skips")
    rows = [
        ("datatrove WarcReader+Trafilatura", len(dt), dt_s, dt_cpu, "-", None),
        (
            "tokenmill ingest, trafilatura",
            len(tm_traf),
            traf_s,
            traf_cpu,
            (agree_traf, both_traf, union_traf),
            traf_counts,
        ),
        (
            f"tokenmill ingest, {DEFAULT_EXTRACTOR} (default)",
            len(tm_def),
            def_s,
            def_cpu,
            (agree_def, both_def, union_def),
            def_counts,
        ),
    ]
    for name, docs, secs, cpu, agree, counts in rows:
        line = (
            f"{name:<44} docs={docs:<5} {docs / secs:8.1f} docs/s {mb / secs:6.3f} MB/s  "
            f"{secs:7.2f} s wall {cpu:7.2f} s CPU"
        )
        if counts:
            line += f"  agreement={agree[0]:.4f} ({agree[1]} in both of {agree[2]})  rejects={counts['rejected_by_reason']}"
        print(line)
    print(
        f"docs={len(tm_def)} agreement={agree_traf:.4f} speedup_vs_datatrove={dt_s / def_s:.2f} "
        f"docs_datatrove={len(dt)} docs_trafilatura={len(tm_traf)} agreement_default={agree_def:.4f} "
        f"speedup_trafilatura={dt_s / traf_s:.2f} cpu_speedup_vs_datatrove={dt_cpu / def_cpu:.2f} "
        f"datatrove_non_200={dt_other} extractor={DEFAULT_EXTRACTOR}"
    )


if __name__ == "__main__":
    main()
