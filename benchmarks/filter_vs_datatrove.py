"""tokenmill annotate + filter against datatrove's heuristic filters: keep/drop agreement and speed.

Same input, same process, one core: datatrove runs GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter(filter_no_terminal_punct=False) and FineWebQualityFilter in that order (its
usual pipeline); tokenmill ingests the file (not timed), then runs `annotate` with the quality
signal groups and `filter` with the same rule sets (C4 sentences counted in every kept line,
language/toxicity/domain rules off). Agreement is over every input record: a record ingest
rejects (e.g. empty text) counts as dropped. Speed is input records per second of annotate +
filter as stages (Parquet in and out, manifests, validation). The last line also gives the
speedup of the signal and rule code alone (``kernel_speedup_vs_datatrove``) and the speed of a
full annotate (every signal group: language ID, toxicity classifier, PII, bias too).

    python benchmarks/filter_vs_datatrove.py [--input FILE.jsonl ...]

Needs the bench extra (datatrove) and spaCy, which datatrove uses to split English words.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ROOT.parent / "shared" / "corpora" / "web" / "cc_main_2019-30_sample.jsonl"

from pipeline.filter import AnnotateConfig, AnnotateStage, FilterConfig, FilterStage
from pipeline.filter.annotate import annotate_table
from pipeline.filter.rules import build_rules, judge
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import run_stage

QUALITY_ONLY = AnnotateConfig(language=False, toxicity=False, pii=False, bias=False)
DATATROVE_RULES = FilterConfig(
    c4={"terminal_punct_lines_only": False},
    language={"enabled": False},
    toxicity={"enabled": False},
    pii={"enabled": False},
    report=False,
)


def read_records(path: Path) -> tuple[list[str | None], dict[int, int]]:
    """Texts of the non-blank lines, and line number (as ingest counts, from 1) -> index."""
    out, index = [], {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                index[n] = len(out)
                try:
                    t = json.loads(line).get("text")
                except json.JSONDecodeError:
                    t = None
                out.append(t if isinstance(t, str) else None)
    return out, index


def run_datatrove(texts: list[str | None]) -> tuple[list[bool], float]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]
    filters[0].filter(Document(text="warm up the word tokenizer", id="0"))
    keep = []
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        if text is None:
            keep.append(False)
            continue
        doc = Document(text=text, id=str(i))
        keep.append(all(f.filter(doc) is True for f in filters))
    return keep, time.perf_counter() - t0


def run_kernels(ingested) -> float:
    """Seconds of the signal and rule code alone (no Parquet I/O, manifests or validation)."""
    table = pa.concat_tables(pq.read_table(p) for p in ingested.shard_paths())
    rules = build_rules(DATATROVE_RULES)
    t0 = time.perf_counter()
    for start in range(0, table.num_rows, QUALITY_ONLY.batch_rows):
        judge(annotate_table(table.slice(start, QUALITY_ONLY.batch_rows), QUALITY_ONLY), rules)
    return time.perf_counter() - t0


def run_tokenmill(
    path: Path, root: Path, line_index: dict[int, int]
) -> tuple[list[bool], float, float, float]:
    ingest = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(path))]), root, {})
    kernel_s = run_kernels(ingest.dataset)
    t0 = time.perf_counter()
    annotated = run_stage(AnnotateStage(), QUALITY_ONLY, root, {"dedup": ingest.dataset})
    kept = run_stage(FilterStage(), DATATROVE_RULES, root, {"annotate": annotated.dataset})
    seconds = time.perf_counter() - t0
    keep = [False] * len(line_index)
    for p in kept.dataset.shard_paths():
        for rec in pq.read_table(p, columns=["source_record"]).column(0).to_pylist():
            keep[line_index[rec]] = True
    t0 = time.perf_counter()
    run_stage(AnnotateStage(), AnnotateConfig(), root / "full", {"dedup": ingest.dataset})
    return keep, seconds, time.perf_counter() - t0, kernel_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", nargs="+", type=Path, default=[DEFAULT])
    args = ap.parse_args()
    pa.set_cpu_count(1)  # one core for both sides
    pa.set_io_thread_count(1)
    agree = total = 0
    dt_s = tm_s = full_s = kernel_s = 0.0
    dt_kept = tm_kept = 0
    for path in args.input:
        if not path.is_file():
            sys.exit(f"{path}: no such file (the shared corpora live in ../shared/corpora)")
        texts, line_index = read_records(path)
        dt_keep, s = run_datatrove(texts)
        dt_s += s
        with tempfile.TemporaryDirectory() as tmp:
            tm_keep, s, f, k = run_tokenmill(path, Path(tmp), line_index)
        tm_s += s
        full_s += f
        kernel_s += k
        agree += sum(a == b for a, b in zip(dt_keep, tm_keep))
        total += len(texts)
        dt_kept += sum(dt_keep)
        tm_kept += sum(tm_keep)
        print(
            f"{path.name}: {len(texts)} docs, datatrove keeps {sum(dt_keep)} in {dt_s:.2f}s, "
            f"tokenmill keeps {sum(tm_keep)} in {tm_s:.2f}s",
            flush=True,
        )
    dt_rate, tm_rate = total / dt_s, total / tm_s
    print(
        f"docs={total} agreement={agree / total:.4f} datatrove_kept={dt_kept} tokenmill_kept={tm_kept} "
        f"datatrove_docs_per_s={dt_rate:.1f} tokenmill_docs_per_s={tm_rate:.1f} "
        f"speedup_vs_datatrove={tm_rate / dt_rate:.2f} kernel_speedup_vs_datatrove={dt_s / kernel_s:.2f} "
        f"full_annotate_docs_per_s={total / full_s:.1f}"
    )


if __name__ == "__main__":
    main()
