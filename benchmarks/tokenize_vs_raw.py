"""tokenmill's tokenize stage end to end vs raw `Tokenizer.encode_batch`, on the same texts.

Inputs: every stress variant of benchmarks/variants.py (``--variants``, the default: web pages
as they are, the first 100 of them, lowercase, Penn-Treebank tokenized, without newlines, cut
into 1-2 KB documents, inside boilerplate, code, 24 languages), or the ``--input`` files alone
(``--no-variants``). Per input, setup (not timed): the files are ingested once (the real ingest
stage), a byte-level BPE is trained once on them, and a 10x copy of the ingested dataset is
made with fresh ids. Then, in fresh processes, alternating and repeated:

* raw: the texts already in memory, one `tokenizers.Tokenizer.encode_batch` call;
* tokenmill: `run_stage(TokenizeStage, tokenizer="pretrained")`: read Parquet, load the
  tokenizer, check ids, encode, split, pack, shuffle, write both views, validate the
  expectation suites, publish.

Both workers import their libraries before the clock starts (pyarrow loads pandas on first use:
the raw worker does so reading its texts, the tokenmill worker by importing it). Each
measurement runs in its own process so peak RSS is that run's alone. Prints one row per input
with medians, and on the last line ``ratio_vs_raw`` (raw seconds / tokenmill seconds on the
scaled input, so >= 1 means faster than raw), ``ratio_vs_raw_1x``, ``peak_rss_mb`` (scaled
input) and ``peak_rss_mb_1x`` for the web variant (or the ``--input`` files), then
``ratio_vs_raw_min`` (the smallest ratio over every variant at 1x and at the scaled size) with
the variant and size it came from. The line above holds throughputs and the validation seconds.

    python benchmarks/tokenize_vs_raw.py [--variants [NAME ...] | --no-variants --input FILE ...]
        [--repeats 3] [--scale 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.variants import VARIANTS, build_variants

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
DEFAULT_INPUT = CORPORA / "web" / "cc_main_2019-30_sample.jsonl"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers (each in a fresh process) ---------------------------------------------------------


def worker_raw(dataset: str, tokenizer: str) -> dict:
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    from pipeline.dataset import Dataset

    ds = Dataset(Path(dataset))
    texts = [
        t for p in ds.shard_paths() for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()
    ]
    tok = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
    # As the stage encodes: a text spelling the end-of-text token is plain text, not a boundary
    # (the code variant holds one), so both sides produce the same ids.
    tok.encode_special_tokens = True
    t0, c0 = time.perf_counter(), time.process_time()
    encodings = tok.encode_batch(texts)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "tokens": sum(len(e.ids) for e in encodings),
        "bytes": sum(len(t.encode()) for t in texts),
        "peak_rss_mb": peak_rss_mb(),
    }


def worker_tokenmill(dataset: str, tokenizer: str, root: str, seq_len: int) -> dict:
    import pandas  # noqa: F401  # pyarrow imports it on first use; the raw worker has before its clock

    from pipeline import observe
    from pipeline.dataset import Dataset
    from pipeline.stage import run_stage
    from pipeline.tokenize import TokenizeConfig, TokenizeStage

    validation: dict = {}
    observe.add_reporter(lambda event, data: validation.update(data) if event == "validation" else None)
    cfg = TokenizeConfig(tokenizer="pretrained", tokenizer_path=tokenizer, seq_len=seq_len)
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_stage(TokenizeStage(), cfg, root, {"decontaminate": Dataset(Path(dataset))})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    totals = res.dataset.manifest["totals"]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "validation_seconds": validation.get("seconds", 0.0),
        "tokens": totals["tokens_train"] + totals["tokens_val"],
        "bytes": totals["text_bytes"],
        "sequences": totals["sequences_train"] + totals["sequences_val"],
        "peak_rss_mb": peak_rss_mb(),
        "cached": res.cached,
    }


def run_worker(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"worker {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- setup -------------------------------------------------------------------------------------


def setup(inputs: list[Path], work: Path, scale: int, vocab_size: int) -> tuple[Path, Path, Path]:
    """Ingest the inputs, train a tokenizer, and make a ``scale``x copy of the dataset."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.dataset import Staging, manifest_header
    from pipeline.ingest.config import IngestConfig, SourceConfig
    from pipeline.ingest.stage import IngestStage
    from pipeline.schema import DOCUMENT_SCHEMA, REJECT_SCHEMA
    from pipeline.stage import run_stage
    from pipeline.tokenize.tokenizer import train_bpe

    root = work / "setup"
    ingest = run_stage(
        IngestStage(), IngestConfig(sources=[SourceConfig(path=str(p)) for p in inputs]), root, {}
    )
    ds = ingest.dataset
    texts = [t for b in ds.iter_batches(columns=["text"]) for t in b.column("text").to_pylist()]
    tok = train_bpe([texts], vocab_size)
    tok_dir = tok.save(work / "tokenizer")

    big = Staging(root, "ingest", f"x{scale}-{ds.fingerprint}"[:32])
    for k in range(scale):
        w = pq.ParquetWriter(
            big.view("data") / f"part-{k:05d}-0000.parquet", DOCUMENT_SCHEMA, compression="zstd"
        )
        for p in ds.shard_paths():
            t = pq.read_table(p).cast(DOCUMENT_SCHEMA)
            ids = pc.binary_join_element_wise(t.column("id"), pa.scalar(f"-copy{k}"), "")
            w.write_table(t.set_column(0, DOCUMENT_SCHEMA.field("id"), ids))
        w.close()
    counts = {
        "rows_in": ds.num_rows() * scale,
        "rows_out": ds.num_rows() * scale,
        "rows_rejected": 0,
        "rejected_by_reason": {},
    }
    manifest = {**manifest_header("ingest", big.fingerprint), "counts": counts, "parent": None}
    big_ds = big.publish(manifest, {"data": DOCUMENT_SCHEMA, "rejects": REJECT_SCHEMA})
    return ds.path, big_ds.path, tok_dir


def measure(inputs: list[Path], work: Path, args: argparse.Namespace) -> dict:
    """Setup, then ``repeats`` alternating runs of both sides at 1x and at ``scale``x; medians."""
    one, big, tok = setup(inputs, work, args.scale, args.vocab_size)
    runs: dict[str, list[dict]] = {"raw_1x": [], "tm_1x": [], "raw_big": [], "tm_big": []}
    for r in range(args.repeats):
        # A fresh data root per run, so every tokenmill run does the full work (no cache hit).
        runs["raw_1x"].append(run_worker("raw", str(one), str(tok)))
        runs["tm_1x"].append(
            run_worker("tokenmill", str(one), str(tok), str(work / f"tm1-{r}"), str(args.seq_len))
        )
        runs["raw_big"].append(run_worker("raw", str(big), str(tok)))
        runs["tm_big"].append(
            run_worker("tokenmill", str(big), str(tok), str(work / f"tmb-{r}"), str(args.seq_len))
        )
    assert all(not x["cached"] for k in ("tm_1x", "tm_big") for x in runs[k])
    for size in ("1x", "big"):
        assert runs[f"raw_{size}"][0]["tokens"] == runs[f"tm_{size}"][0]["tokens"], (
            "raw and tokenmill disagree on token counts"
        )
    med = {
        k: {m: statistics.median(x[m] for x in v) for m in ("seconds", "cpu_seconds", "peak_rss_mb")}
        for k, v in runs.items()
    }
    val = {k: statistics.median(x["validation_seconds"] for x in runs[k]) for k in ("tm_1x", "tm_big")}
    return {
        "runs": runs,
        "med": med,
        "validation": val,
        "mb": {k: runs[k][0]["bytes"] / 1e6 for k in runs},
        "docs": sum(1 for _ in open_lines(inputs)),
        "ratio_1x": med["raw_1x"]["seconds"] / med["tm_1x"]["seconds"],
        "ratio_big": med["raw_big"]["seconds"] / med["tm_big"]["seconds"],
        # CPU seconds of the whole process (every thread): less sensitive to other load.
        "cpu_ratio_1x": med["raw_1x"]["cpu_seconds"] / med["tm_1x"]["cpu_seconds"],
        "cpu_ratio_big": med["raw_big"]["cpu_seconds"] / med["tm_big"]["cpu_seconds"],
    }


def open_lines(paths: list[Path]):
    for p in paths:
        with p.open(encoding="utf-8") as f:
            yield from (line for line in f if line.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--variants",
        nargs="*",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        metavar="NAME",
        help=f"stress variants to run (default: all of {', '.join(VARIANTS)})",
    )
    ap.add_argument("--no-variants", action="store_true", help="run the --input files only")
    ap.add_argument("--input", nargs="+", type=Path, default=[DEFAULT_INPUT])
    ap.add_argument("--corpora", type=Path, default=CORPORA, help="where the variants are built from")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=None, help="Scratch directory (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tokenize_vs_raw-"))
    if args.no_variants or not args.variants:
        missing = [p for p in args.input if not p.is_file()]
        if missing:
            raise SystemExit(f"missing input {missing[0]}; the default lives in {CORPORA}")
        cases = {"input": list(args.input)}
    else:
        try:
            cases = {
                n: [p] for n, p in build_variants(work / "variants", args.variants, args.corpora).items()
            }
        except FileNotFoundError as e:
            raise SystemExit(f"cannot build the variants: {e}") from e

    x = f"{args.scale}x"
    print(
        f"{'input':13s} {'docs':>6s} {'MB':>6s} {'raw_1x':>7s} {'tm_1x':>7s} {'ratio_1x':>8s} "
        f"{'raw_' + x:>8s} {'tm_' + x:>8s} {'ratio_' + x:>9s} {'cpu_1x':>7s} {'cpu_' + x:>7s} "
        f"{'valid_1x':>8s} {'valid_' + x:>9s} {'rss_' + x:>8s}",
        flush=True,
    )
    results = {}
    for name, inputs in cases.items():
        r = results[name] = measure(inputs, work / name, args)
        m = r["med"]
        print(
            f"{name:13s} {r['docs']:6d} {r['mb']['raw_1x']:6.2f} {m['raw_1x']['seconds']:7.2f} "
            f"{m['tm_1x']['seconds']:7.2f} {r['ratio_1x']:8.3f} {m['raw_big']['seconds']:8.2f} "
            f"{m['tm_big']['seconds']:8.2f} {r['ratio_big']:9.3f} {r['cpu_ratio_1x']:7.3f} "
            f"{r['cpu_ratio_big']:7.3f} {r['validation']['tm_1x']:8.3f} "
            f"{r['validation']['tm_big']:9.3f} {m['tm_big']['peak_rss_mb']:8.0f}",
            flush=True,
        )

    head_name = "web" if "web" in results else next(iter(results))
    head = results[head_name]
    med, mb = head["med"], head["mb"]
    rss = {k: med[k]["peak_rss_mb"] for k in med}
    ratio_big_no_val = med["raw_big"]["seconds"] / (med["tm_big"]["seconds"] - head["validation"]["tm_big"])
    print(
        f"input={head_name} raw_mb_s={mb['raw_big'] / med['raw_big']['seconds']:.2f} "
        f"tokenmill_mb_s={mb['tm_big'] / med['tm_big']['seconds']:.2f} "
        f"validation_seconds_1x={head['validation']['tm_1x']:.3f} "
        f"validation_seconds_{x}={head['validation']['tm_big']:.3f} "
        f"ratio_vs_raw_excl_validation={ratio_big_no_val:.3f} raw_peak_rss_mb_{x}={rss['raw_big']:.0f}"
    )
    by_case = [
        (r[f"ratio_{size}"], name, s) for name, r in results.items() for size, s in (("1x", "1x"), ("big", x))
    ]
    low, low_name, low_size = min(by_case)
    print(
        f"ratio_vs_raw={head['ratio_big']:.3f} ratio_vs_raw_1x={head['ratio_1x']:.3f} scale={args.scale} "
        f"peak_rss_mb={rss['tm_big']:.0f} peak_rss_mb_1x={rss['tm_1x']:.0f} "
        f"peak_rss_growth={rss['tm_big'] / rss['tm_1x']:.2f} cpus={os.cpu_count()} "
        f"ratio_vs_raw_min={low:.3f} ratio_vs_raw_min_1x={min(r['ratio_1x'] for r in results.values()):.3f} "
        f"ratio_vs_raw_min_{x}={min(r['ratio_big'] for r in results.values()):.3f} "
        f"cpu_ratio_vs_raw_min={min(min(r['cpu_ratio_1x'], r['cpu_ratio_big']) for r in results.values()):.3f} "
        f"min_variant={low_name} min_size={low_size} variants={0 if 'input' in cases else len(results)}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        fn = worker_raw if kind == "raw" else worker_tokenmill
        if kind == "tokenmill":
            rest[-1] = int(rest[-1])  # type: ignore[call-overload]
        print(json.dumps(fn(*rest)))
    else:
        main()
