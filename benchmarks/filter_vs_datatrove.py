"""tokenmill annotate + filter against datatrove's heuristic filters: keep/drop agreement and speed.

Same input, same process, one core: datatrove runs GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter(filter_no_terminal_punct=False) and FineWebQualityFilter in that order (its
usual pipeline); tokenmill ingests the file (not timed), then runs `annotate` with the quality
signal groups and `filter` with the same rule sets (C4 sentences counted in every kept line,
language/toxicity/domain rules off). Both clean kept pages as C4 does (offending lines
removed). Agreement is over every input record: a record ingest rejects (e.g. empty text) counts
as dropped; ``text_agreement`` is over the records both keep: the same lines after C4's
cleaning (compared as C4 writes them: stripped, without citation marks, blank lines dropped, and
normalized as ingest normalizes text, since tokenmill filters the ingested text).

``agreement_excluding_documented`` also counts as agreeing a record on which tokenmill differs
only by a deliberate, documented difference (README, "Filter agreement with datatrove"): the
records the two sides decide differently are run through datatrove again with those differences
applied (its input normalized as ingest does; repeated n-grams compared word by word rather than
as concatenated strings), and a record that then agrees with tokenmill is counted there.
Speed is input records per second of annotate + filter as stages (Parquet in and out,
manifests, validation), by wall clock and by CPU time of the process (``cpu_speedup``: less
sensitive to other load on a shared machine); datatrove runs in a child process, tokenmill's
figure is the median of three runs around it (see ``compare``). The last line also gives the speedup of the
signal and rule code alone (``kernel_speedup_vs_datatrove``, and its minimum over inputs
``kernel_speedup_min``: the median of three passes with no Parquet, manifests or validation, what
the stages would reach if they cost nothing around it), the speed of a full annotate
(every signal group: language ID, toxicity classifier, PII, bias too), and the seconds the stages
spent validating their output (``validation_s``, a fixed cost per stage) with the smallest
speedup once those are taken out (``speedup_excluding_validation_min``).

Inputs: every stress variant of benchmarks/variants.py (``--variants``, the default; see that
module for the list), one comparison per variant, or the ``--input`` files (``--no-variants``).
One line per input, then the last line: the existing keys over all inputs pooled, and
``agreement_min`` / ``agreement_excluding_documented_min`` / ``speedup_min`` (wall clock) /
``cpu_speedup_min``: the smallest per-input figures, with the input each came from.

    python benchmarks/filter_vs_datatrove.py [--variants [NAME ...] | --no-variants --input FILE.jsonl ...]

Needs the bench extra (datatrove) and spaCy, which datatrove uses to split English words.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"
DEFAULT = CORPORA / "web" / "cc_main_2019-30_sample.jsonl"

from benchmarks.variants import VARIANTS, build_variants
from pipeline.filter import AnnotateConfig, AnnotateStage, FilterConfig, FilterStage, c4
from pipeline.filter.annotate import annotate_table
from pipeline.filter.rules import build_rules, judge
from pipeline.filter.select import clean_lines
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.sources.normalize import normalize_text
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


def cleaned_lines(text: str) -> list[str]:
    """A kept text as C4 writes it (lines stripped, citation marks removed, blank lines dropped),
    normalized as ingest normalizes text."""
    lines = (re.sub(c4.CITATION, "", line).strip() for line in normalize_text(text).split("\n"))
    return [line for line in lines if line]


def _dup_ngram_chars_by_words(words: list[str], n: int) -> int:
    """datatrove's repeated n-gram characters, with n-grams compared word by word (as tokenmill
    does) instead of as the words concatenated without a separator ("ab c" == "a bc")."""
    seen: set[tuple[str, ...]] = set()
    chars = i = 0
    while i < len(words) - n + 1:
        gram = tuple(words[i : i + n])
        if gram in seen:
            chars += sum(map(len, gram))
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


def run_datatrove_documented(texts: list[str | None]) -> list[bool]:
    """Whether datatrove keeps each text with tokenmill's documented differences applied: the
    text normalized as ingest does, repeated n-grams compared word by word."""
    from datatrove.pipeline.filters import gopher_repetition_filter

    original = gopher_repetition_filter.find_all_duplicate
    gopher_repetition_filter.find_all_duplicate = _dup_ngram_chars_by_words
    try:
        out, _, _ = run_datatrove([None if t is None else normalize_text(t) for t in texts])
    finally:
        gopher_repetition_filter.find_all_duplicate = original
    return [t is not None for t in out]


def run_datatrove(texts: list[str | None]) -> tuple[list[str | None], float, float]:
    """Each record's text after the filters (None: dropped), wall and CPU seconds."""
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
    out: list[str | None] = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i, text in enumerate(texts):
        if text is None:
            out.append(None)
            continue
        doc = Document(text=text, id=str(i))  # C4QualityFilter rewrites doc.text
        out.append(doc.text if all(f.filter(doc) is True for f in filters) else None)
    return out, time.perf_counter() - t0, time.process_time() - c0


def run_kernels(ingested) -> float:
    """Seconds of the signal, rule and line-cleaning code alone (no Parquet I/O, manifests or validation)."""
    table = pa.concat_tables(pq.read_table(p) for p in ingested.shard_paths())
    rules = build_rules(DATATROVE_RULES)
    t0 = time.perf_counter()
    for start in range(0, table.num_rows, QUALITY_ONLY.batch_rows):
        annotated = annotate_table(table.slice(start, QUALITY_ONLY.batch_rows), QUALITY_ONLY)
        kept, _ = judge(annotated, rules)
        clean_lines(annotated.filter(pa.array(kept)), DATATROVE_RULES.c4.terminal_punct_lines_only)
    return time.perf_counter() - t0


VALIDATION = {"s": 0.0, "cpu": 0.0}  # time in the stages' output validation (GX suites)


def _time_validation() -> None:
    """Count the time the stages spend validating their output in VALIDATION: it is a fixed cost
    per stage that the other figures include, reported apart to show how much it weighs."""
    from pipeline.stage import Stage

    validate = Stage.validate

    def timed(self, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return validate(self, *args, **kwargs)
        finally:
            VALIDATION["s"] += time.perf_counter() - t0
            VALIDATION["cpu"] += time.process_time() - c0

    Stage.validate = timed  # type: ignore[method-assign]


def run_stages(
    ingested, root: Path, line_index: dict[int, int]
) -> tuple[list[str | None], float, float, float]:
    """annotate + filter as stages: each record's kept text (None: dropped), wall and CPU seconds,
    and the wall seconds of those spent validating the output."""
    VALIDATION.update(s=0.0, cpu=0.0)
    t0, c0 = time.perf_counter(), time.process_time()
    annotated = run_stage(AnnotateStage(), QUALITY_ONLY, root, {"dedup": ingested})
    kept = run_stage(FilterStage(), DATATROVE_RULES, root, {"annotate": annotated.dataset})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    out: list[str | None] = [None] * len(line_index)
    for p in kept.dataset.shard_paths():
        cols = pq.read_table(p, columns=["source_record", "text"]).to_pydict()
        for rec, text in zip(cols["source_record"], cols["text"]):
            out[line_index[rec]] = text
    return out, seconds, cpu, VALIDATION["s"]


def compare(path: Path, texts: list[str | None], line_index: dict[int, int], root: Path) -> dict:
    """Both sides on one file. datatrove runs in a child process of its own (spaCy's large heap
    would slow this process's garbage collector); tokenmill's stages run before and twice after
    it, in fresh data roots, and the median run counts, so a burst of load on a shared machine
    during one short run does not decide the figure."""
    ingest = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(path))]), root, {})
    runs = [run_stages(ingest.dataset, root / "run0", line_index)]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        dt_out, dt_s, dt_cpu = pool.submit(run_datatrove, texts).result()
    runs += [run_stages(ingest.dataset, root / f"run{i}", line_index) for i in (1, 2)]
    assert all(r[0] == runs[0][0] for r in runs), "tokenmill output differs between runs"
    kernel_s = statistics.median(run_kernels(ingest.dataset) for _ in range(3))
    t0 = time.perf_counter()
    run_stage(AnnotateStage(), AnnotateConfig(), root / "full", {"dedup": ingest.dataset})
    return {
        "dt_out": dt_out,
        "dt_s": dt_s,
        "dt_cpu": dt_cpu,
        "tm_out": runs[0][0],
        "tm_s": statistics.median(r[1] for r in runs),
        "tm_cpu": statistics.median(r[2] for r in runs),
        "tm_validation_s": statistics.median(r[3] for r in runs),
        "kernel_s": kernel_s,
        "full_s": time.perf_counter() - t0,
    }


def run_file(path: Path) -> dict:
    """Both sides on one JSONL file: agreement counts, kept counts and seconds."""
    texts, line_index = read_records(path)
    with tempfile.TemporaryDirectory() as tmp:
        r = compare(path, texts, line_index, Path(tmp))
    dt_keep = [t is not None for t in r["dt_out"]]
    tm_keep = [t is not None for t in r["tm_out"]]
    both = [(a, b) for a, b in zip(r["dt_out"], r["tm_out"]) if a is not None and b is not None]
    differ = [i for i, (a, b) in enumerate(zip(dt_keep, tm_keep)) if a != b]
    documented = 0
    if differ:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            again = pool.submit(run_datatrove_documented, [texts[i] for i in differ]).result()
        documented = sum(keep == tm_keep[i] for i, keep in zip(differ, again))
    return {
        **{k: r[k] for k in ("dt_s", "dt_cpu", "tm_s", "tm_cpu", "tm_validation_s", "kernel_s", "full_s")},
        "docs": len(texts),
        "agree": sum(a == b for a, b in zip(dt_keep, tm_keep)),
        "agree_documented": len(texts) - len(differ) + documented,
        "both_kept": len(both),
        "same_text": sum(cleaned_lines(a) == cleaned_lines(b) for a, b in both),
        "dt_kept": sum(dt_keep),
        "tm_kept": sum(tm_keep),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--variants",
        nargs="*",
        choices=list(VARIANTS),
        default=None,
        metavar="NAME",
        help=f"stress variants to run (default, or no NAME: all of {', '.join(VARIANTS)})",
    )
    ap.add_argument("--no-variants", action="store_true", help="run the --input files only")
    ap.add_argument("--input", nargs="+", type=Path, default=[DEFAULT])
    ap.add_argument("--corpora", type=Path, default=CORPORA, help="where the variants are built from")
    args = ap.parse_args()
    pa.set_cpu_count(1)  # one core for both sides
    pa.set_io_thread_count(1)
    _time_validation()
    if args.no_variants:
        for path in args.input:
            if not path.is_file():
                sys.exit(f"{path}: no such file (the shared corpora live in ../shared/corpora)")
        cases = {p.name: p for p in args.input}
    else:
        try:
            cases = build_variants(
                Path(tempfile.mkdtemp(prefix="filter-variants-")), args.variants or None, args.corpora
            )
        except FileNotFoundError as e:
            sys.exit(f"cannot build the variants: {e}")

    results = {}
    for name, path in cases.items():
        r = results[name] = run_file(path)
        print(
            f"{name}: {r['docs']} docs, agreement {r['agree'] / r['docs']:.4f}, "
            f"agreement_excluding_documented {r['agree_documented'] / r['docs']:.4f}, "
            f"text_agreement {r['same_text'] / max(1, r['both_kept']):.4f}, "
            f"datatrove keeps {r['dt_kept']} in {r['dt_s']:.2f}s, tokenmill keeps {r['tm_kept']} in {r['tm_s']:.2f}s, "
            f"speedup {r['dt_s'] / r['tm_s']:.2f}, cpu_speedup {r['dt_cpu'] / r['tm_cpu']:.2f}, "
            f"kernel_speedup {r['dt_s'] / r['kernel_s']:.2f}, "
            f"validation {r['tm_validation_s']:.2f}s of tokenmill's, "
            f"speedup without it {r['dt_s'] / (r['tm_s'] - r['tm_validation_s']):.2f}",
            flush=True,
        )
    tot = {k: sum(r[k] for r in results.values()) for k in next(iter(results.values()))}
    total = tot["docs"]
    dt_rate, tm_rate = total / tot["dt_s"], total / tot["tm_s"]
    agreement = {n: r["agree"] / r["docs"] for n, r in results.items()}
    documented = {n: r["agree_documented"] / r["docs"] for n, r in results.items()}
    low_documented = min(documented, key=documented.__getitem__)
    speedup = {n: r["dt_s"] / r["tm_s"] for n, r in results.items()}
    low_agree, low_speed = min(agreement, key=agreement.__getitem__), min(speedup, key=speedup.__getitem__)
    print(
        f"docs={total} agreement={tot['agree'] / total:.4f} "
        f"agreement_excluding_documented={tot['agree_documented'] / total:.4f} "
        f"text_agreement={tot['same_text'] / max(1, tot['both_kept']):.4f} "
        f"datatrove_kept={tot['dt_kept']} tokenmill_kept={tot['tm_kept']} "
        f"datatrove_docs_per_s={dt_rate:.1f} tokenmill_docs_per_s={tm_rate:.1f} "
        f"speedup_vs_datatrove={tm_rate / dt_rate:.2f} datatrove_cpu_docs_per_s={total / tot['dt_cpu']:.1f} "
        f"tokenmill_cpu_docs_per_s={total / tot['tm_cpu']:.1f} "
        f"cpu_speedup_vs_datatrove={tot['dt_cpu'] / tot['tm_cpu']:.2f} "
        f"kernel_speedup_vs_datatrove={tot['dt_s'] / tot['kernel_s']:.2f} "
        f"full_annotate_docs_per_s={total / tot['full_s']:.1f} "
        f"agreement_min={agreement[low_agree]:.4f} agreement_min_input={low_agree} "
        f"agreement_excluding_documented_min={documented[low_documented]:.4f} "
        f"speedup_min={speedup[low_speed]:.2f} speedup_min_input={low_speed} "
        f"cpu_speedup_min={min(r['dt_cpu'] / r['tm_cpu'] for r in results.values()):.2f} "
        f"kernel_speedup_min={min(r['dt_s'] / r['kernel_s'] for r in results.values()):.2f} "
        f"validation_s={tot['tm_validation_s']:.2f} "
        f"speedup_excluding_validation_min="
        f"{min(r['dt_s'] / (r['tm_s'] - r['tm_validation_s']) for r in results.values()):.2f} "
        f"inputs={len(results)}"
    )


if __name__ == "__main__":
    main()
