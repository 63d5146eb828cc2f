"""The whole data path against datatrove's: filters, MinHash dedup and tokenizer on the same input.

Both sides read the same JSONL files (the input split round-robin into ``--parts`` files, so
each side can spread work over ``--workers`` processes or threads) and encode with the same
tokenizer: a 4,096-token byte-level BPE tokenmill trains on the input beforehand (not timed),
saved as a tokenizer.json both load.

- **datatrove**, as its own FineWeb-style pipelines run it (``LocalPipelineExecutor``, ``--workers``
  processes): ``JsonlReader`` → ``GopherRepetitionFilter`` → ``GopherQualityFilter`` →
  ``C4QualityFilter(filter_no_terminal_punct=False)`` → ``FineWebQualityFilter`` → ``JsonlWriter``;
  then its four MinHash stages (``MinhashDedupSignature`` on the filtered documents,
  ``MinhashDedupBuckets``, ``MinhashDedupCluster``, ``MinhashDedupFilter``) with its default
  ``MinhashConfig`` (word 5-grams, 14 bands of 8 hashes, seed 1), the last feeding
  ``DocumentTokenizer`` (shuffled, end-of-text token after each document), then
  ``DocumentTokenizerMerger`` into one shuffled token file. datatrove hashes n-grams as ``str``,
  which the installed xxhash refuses: its xxhash functions get the text's UTF-8 bytes instead
  (the same hashes datatrove computes with an xxhash that accepts ``str``).
- **tokenmill**, through its real flows (Prefect, the threads engine with ``--workers``
  workers, or ``--engine dask``: a Dask cluster of ``--workers`` processes, started in the
  timed span): ``ingest`` → ``dedup`` (exact + MinHash LSH with the same 5-grams and 14x8
  bands, exact Jaccard verification) → ``annotate`` (the Gopher, C4 and FineWeb signals) → ``filter``
  (the same rule sets and thresholds as datatrove's filters, C4 line removal, language,
  toxicity and PII rules off, as in ``benchmarks/filter_vs_datatrove.py``) → ``tokenize``
  (the same tokenizer, packed into 256-token sequences, train/val split, global shuffle), with
  ``decontaminate`` between the two (tokenize reads its output; the default evaluation texts of
  the labeled stage, built before the timed span). Each stage also writes its manifest, rejects
  and report and validates its output.

tokenmill dedups before filtering (its pipeline order), so its dedup sees every document while
datatrove's sees only those its filters kept, and it decontaminates, which datatrove's pipeline
does not: more work for tokenmill, not less.

Each side runs in a child process of its own after its imports (and, for tokenmill, the
temporary Prefect API and GX's import, a worker's once-per-process costs) are done; the timed
span runs from the first stage's start to the last one's end. End-to-end MB/s is the input's
UTF-8 text bytes over that span's wall seconds, and over its CPU seconds (this process tree's:
datatrove's worker processes, Prefect's API server), which another job's load on a shared
machine disturbs far less. ``speedup_vs_datatrove`` is the ratio of wall MB/s,
``cpu_speedup_vs_datatrove`` of CPU MB/s.

Input: ``--input FILE.jsonl`` (default: the shared web sample), or ``--gb N``: N GB built as
``benchmarks/scale_data.py`` builds its input (recombined paragraphs, 5% planted
near-duplicates); ``--copies K`` repeats the input K times with fresh ids (exact duplicates:
both sides remove all but one copy).

    python benchmarks/datapath_vs_datatrove.py [--input FILE.jsonl | --gb N] [--workers 2]

Last line: ``speedup_vs_datatrove=…`` then the other figures as ``key=value``.
Needs the bench extra (datatrove) and spaCy, which datatrove uses to split English words.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ROOT.parent / "shared" / "corpora" / "web" / "cc_main_2019-30_sample.jsonl"
EOT = "<|endoftext|>"
SIDES = ("datatrove", "tokenmill")
TOKENMILL_STAGES = ("ingest", "dedup", "annotate", "filter", "decontaminate", "tokenize")

# tokenmill's filter rules as datatrove's four filters apply them (filter_vs_datatrove.py's).
TOKENMILL_SETTINGS = [
    "annotate.language=false",
    "annotate.toxicity=false",
    "annotate.pii=false",
    "annotate.bias=false",
    "filter.c4.terminal_punct_lines_only=false",
    "filter.language.enabled=false",
    "filter.toxicity.enabled=false",
    "filter.pii.enabled=false",
    "filter.report=false",
    "dedup.ngram=5",
    "dedup.bands=14",
    "dedup.rows=8",
    "dedup.seed=1",
    "tokenize.tokenizer=pretrained",
]


# ------------------------------------------------------------------------------------------------
# The input (not timed)


def prepare_input(src: Path, out_dir: Path, parts: int, copies: int) -> dict[str, Any]:
    """``src`` split round-robin into ``parts`` JSONL files (``copies`` times, fresh ids)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [(out_dir / f"part-{i:03d}.jsonl").open("w", encoding="utf-8") for i in range(parts)]
    docs = size = 0
    try:
        for copy in range(copies):
            with src.open(encoding="utf-8") as f:
                for n, line in enumerate(f):
                    if not line.strip():
                        continue
                    rec = json.loads(line)
                    text = rec.get("text")
                    if not isinstance(text, str):
                        continue
                    doc_id = f"{rec.get('id', n)}-{copy}" if copies > 1 else str(rec.get("id", n))
                    files[docs % parts].write(
                        json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n"
                    )
                    docs += 1
                    size += len(text.encode("utf-8"))
    finally:
        for f in files:
            f.close()
    return {"docs": docs, "text_bytes": size, "files": [str(f.name) for f in files]}


def train_tokenizer(
    files: list[str], out_dir: Path, vocab_size: int = 4_096, sample_bytes: int = 50_000_000
) -> str:
    """A byte-level BPE trained on (the first ``sample_bytes`` of) the input, as tokenize trains one."""
    from pipeline.tokenize.tokenizer import train_bpe

    def batches():
        seen = 0
        for path in files:
            batch: list[str] = []
            with open(path, encoding="utf-8") as f:
                for line in f:
                    text = json.loads(line)["text"]
                    batch.append(text)
                    seen += len(text)
                    if len(batch) == 1_000:
                        yield batch
                        batch = []
                    if seen >= sample_bytes:
                        break
            if batch:
                yield batch
            if seen >= sample_bytes:
                return

    train_bpe(batches(), vocab_size, eot_token=EOT).save(out_dir)
    return str(out_dir / "tokenizer.json")


# ------------------------------------------------------------------------------------------------
# The two sides, each in a child process


def _jsonl_lines(folder: Path) -> int:
    import gzip

    n = 0
    for p in sorted(folder.glob("*.jsonl*")):
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as f:
            n += sum(1 for line in f if line.strip())
    return n


def run_datatrove(in_dir: str, work: str, tokenizer: str, workers: int, parts: int) -> dict[str, Any]:
    import xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer, DocumentTokenizerMerger
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashes import xxhash as dt_xxhash

    def _bytes(x: str | bytes) -> bytes:
        return x.encode("utf-8") if isinstance(x, str) else x

    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(_bytes(data))
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(_bytes(data))

    w = Path(work)
    cfg = MinhashConfig()
    logs = w / "logs"

    def run(name: str, pipeline: list, tasks: int) -> float:
        t0 = time.perf_counter()
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logs / name)
        ).run()
        return time.perf_counter() - t0

    from benchmarks.scale_data import TreeMonitor

    monitor = TreeMonitor().start()
    cpu0, t0 = monitor.cpu(), time.perf_counter()
    stages = {}
    stages["filter"] = run(
        "filter",
        [
            JsonlReader(in_dir, glob_pattern="*.jsonl"),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter(),
            JsonlWriter(str(w / "filtered")),
        ],
        parts,
    )
    stages["minhash_signature"] = run(
        "signature",
        [JsonlReader(str(w / "filtered")), MinhashDedupSignature(str(w / "sigs"), config=cfg)],
        parts,
    )
    stages["minhash_buckets"] = run(
        "buckets", [MinhashDedupBuckets(str(w / "sigs"), str(w / "buckets"), config=cfg)], cfg.num_buckets
    )
    stages["minhash_cluster"] = run(
        "cluster", [MinhashDedupCluster(str(w / "buckets"), str(w / "remove_ids"), config=cfg)], 1
    )
    stages["minhash_filter_tokenize"] = run(
        "filter_tokenize",
        [
            JsonlReader(str(w / "filtered")),
            MinhashDedupFilter(str(w / "remove_ids"), exclusion_writer=JsonlWriter(str(w / "removed"))),
            DocumentTokenizer(
                str(w / "tokens"),
                tokenizer_name_or_path=tokenizer,
                eos_token=EOT,
                local_working_dir=str(w / "scratch"),
            ),
        ],
        parts,
    )
    stages["merge"] = run(
        "merge", [DocumentTokenizerMerger(str(w / "tokens"), str(w / "merged"), save_filename="merged")], 1
    )
    wall, cpu = time.perf_counter() - t0, monitor.cpu() - cpu0
    monitor.stop()
    tokens = sum(p.stat().st_size for p in (w / "merged").glob("*.ds")) // 2  # uint16 tokens
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": round(monitor.peak / 2**20),
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "kept_after_filters": _jsonl_lines(w / "filtered"),
        "removed_as_duplicates": _jsonl_lines(w / "removed"),
        "tokens": tokens,
    }


def run_tokenmill(
    in_dir: str, work: str, tokenizer: str, workers: int, parts: int, engine: str = "threads"
) -> dict[str, Any]:
    from benchmarks.scale_data import TreeMonitor, warm_up
    from flows.engines import api_for_workers, shared_cluster, task_runner
    from flows.stages import STAGE_FLOWS
    from pipeline.config import load_config
    from pipeline.stages import BY_NAME

    source = json.dumps([{"path": str(Path(in_dir) / "*.jsonl"), "format": "jsonl", "id_field": "id"}])
    cfg = load_config(
        None,
        [
            f"ingest.sources={source}",
            f"engine.runner={engine}",
            f"engine.workers={workers}",
            *TOKENMILL_SETTINGS,
            f"tokenize.tokenizer_path={tokenizer}",
        ],
    )
    root = Path(work) / "data"
    summaries: dict[str, dict] = {}

    def run(name: str, eng) -> None:
        inputs = {up: summaries[up]["path"] for up in BY_NAME[name].inputs}
        flow = STAGE_FLOWS[name].with_options(task_runner=task_runner(eng))
        summaries[name] = flow(config=cfg.stage_config(name), data_dir=str(root), inputs=inputs)
        assert not summaries[name]["cached"], summaries[name]

    with api_for_workers(cfg.engine):  # Dask workers report to a local API server, as `run` does
        warm_up()
        run("labeled", cfg.engine.model_copy(update={"runner": "threads"}))  # eval texts: setup, untimed
        monitor = TreeMonitor().start()
        cpu0, t0 = monitor.cpu(), time.perf_counter()
        stages = {}
        # The Dask cluster (one per run, as `tokenmill run` starts it) starts inside the timed span.
        with shared_cluster(cfg.engine) as eng:
            for name in TOKENMILL_STAGES:
                s0 = time.perf_counter()
                run(name, eng)
                stages[name] = round(time.perf_counter() - s0, 2)
            wall, cpu = time.perf_counter() - t0, monitor.cpu() - cpu0
        monitor.stop()
    tok = summaries["tokenize"]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": round(monitor.peak / 2**20),
        "stages_s": stages,
        "kept_after_filters": summaries["filter"]["rows_out"],
        "removed_as_duplicates": summaries["ingest"]["rows_out"] - summaries["dedup"]["rows_out"],
        "tokens": _tokens(tok),
    }


def _tokens(summary: dict[str, Any]) -> int:
    """Tokens tokenize wrote (both splits, end-of-text tokens included), from its manifest."""
    from pipeline.dataset import Dataset

    totals = Dataset(Path(summary["path"])).manifest["totals"]
    return totals["tokens_train"] + totals["tokens_val"]


def in_child(side: str, work: Path, args: list[Any]) -> dict[str, Any]:
    """One side in a fresh process (its imports, memory and CPU its own); its stderr to a log."""
    out = work / f"{side}.json"
    log = work / f"{side}.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--side",
        side,
        "--side-args",
        json.dumps(args),
        "--side-out",
        str(out),
    ]
    with log.open("w") as err:
        rc = subprocess.run(cmd, stdout=err, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.stderr.write(log.read_text()[-4000:])
        sys.exit(f"{side} failed (exit {rc}); its log: {log}")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--input", type=Path, default=DEFAULT, help="JSONL with a text field (default: the web sample)"
    )
    ap.add_argument("--gb", type=float, help="build N GB of input as benchmarks/scale_data.py does instead")
    ap.add_argument("--copies", type=int, default=1, help="repeat the input file this many times (fresh ids)")
    ap.add_argument("--workers", type=int, default=2, help="processes (datatrove) / threads (tokenmill)")
    ap.add_argument("--parts", type=int, help="input files (default: --workers)")
    ap.add_argument(
        "--engine",
        choices=["threads", "dask"],
        default="threads",
        help="tokenmill's engine.runner: threads, or a Dask cluster of --workers processes",
    )
    ap.add_argument("--workdir", type=Path, help="default: a temporary directory, removed at the end")
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--side-args", help=argparse.SUPPRESS)
    ap.add_argument("--side-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.side:  # child mode: one side, figures to --side-out
        fn = run_datatrove if args.side == "datatrove" else run_tokenmill
        args.side_out.write_text(json.dumps(fn(*json.loads(args.side_args))))
        return

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    parts = args.parts or args.workers
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tokenmill-datapath-")
        args.workdir = Path(tmp.name)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = args.input
        if args.gb:
            from benchmarks.scale_data import build_input

            src = work / "built.jsonl"
            build_input(src, args.gb, web=args.input if args.input.is_file() else None)
        elif not src.is_file():
            sys.exit(f"{src}: no such file (the shared corpora live in ../shared/corpora; or pass --gb N)")
        inp = prepare_input(src, work / "input", parts, args.copies)
        tokenizer = train_tokenizer(inp["files"], work / "tokenizer")
        mb = inp["text_bytes"] / 1e6
        print(
            f"input: {inp['docs']} docs, {mb:.1f} MB of text in {parts} files; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        res = {}
        for side in SIDES:
            # A fresh directory: datatrove skips the tasks its logs mark completed.
            shutil.rmtree(work / side, ignore_errors=True)
            side_args = [str(work / "input"), str(work / side), tokenizer, args.workers, parts]
            res[side] = in_child(side, work, side_args + ([args.engine] if side == "tokenmill" else []))
            r = res[side]
            print(
                f"{side}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {mb / r['wall_s']:.2f} MB/s, "
                f"{mb / r['cpu_s']:.2f} MB per CPU second, peak RSS {r['peak_rss_mb']} MB; kept after filters "
                f"{r['kept_after_filters']}, removed as duplicates {r['removed_as_duplicates']}, tokens {r['tokens']}; "
                f"stages (s) {json.dumps(r['stages_s'])}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    dt, tm = res["datatrove"], res["tokenmill"]
    line = {
        "speedup_vs_datatrove": round(dt["wall_s"] / tm["wall_s"], 2),
        "cpu_speedup_vs_datatrove": round(dt["cpu_s"] / tm["cpu_s"], 2),
        "tokenmill_mb_s": round(mb / tm["wall_s"], 3),
        "datatrove_mb_s": round(mb / dt["wall_s"], 3),
        "tokenmill_cpu_mb_s": round(mb / tm["cpu_s"], 3),
        "datatrove_cpu_mb_s": round(mb / dt["cpu_s"], 3),
        "tokenmill_peak_rss_mb": tm["peak_rss_mb"],
        "datatrove_peak_rss_mb": dt["peak_rss_mb"],
        "tokenmill_kept": tm["kept_after_filters"],
        "datatrove_kept": dt["kept_after_filters"],
        "docs": inp["docs"],
        "mb": round(mb, 2),
        "workers": args.workers,
        "engine": args.engine,
        "load1": round(os.getloadavg()[0], 1),
    }
    print(" ".join(f"{k}={v}" for k, v in line.items()))


if __name__ == "__main__":
    main()
