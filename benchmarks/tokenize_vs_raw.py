"""tokenmill's tokenize stage end to end vs raw `Tokenizer.encode_batch`, on the same texts.

Setup (not timed): the input files are ingested once (the real ingest stage), a byte-level BPE is
trained once on them, and a 10x copy of the ingested dataset is made with fresh ids. Then, in
fresh processes, alternating and repeated:

* raw: the texts already in memory, one `tokenizers.Tokenizer.encode_batch` call;
* tokenmill: `run_stage(TokenizeStage, tokenizer="pretrained")`: read Parquet, encode, split,
  pack, shuffle, write both views, validate with Great Expectations (import included), publish.

Each measurement runs in its own process so peak RSS is that run's alone. Prints medians; the
last line holds ``ratio_vs_raw`` (raw seconds / tokenmill seconds on the scaled input, so >= 1
means faster than raw), ``ratio_vs_raw_1x`` (where GX's ~4 s import dominates), and
``peak_rss_mb`` (scaled input) beside ``peak_rss_mb_1x``. The line above it holds throughputs,
GX's seconds and the ratio without GX.

    python benchmarks/tokenize_vs_raw.py [--input FILE ...] [--repeats 3] [--scale 10]
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
    t0 = time.perf_counter()
    encodings = tok.encode_batch(texts)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "tokens": sum(len(e.ids) for e in encodings),
        "bytes": sum(len(t.encode()) for t in texts),
        "peak_rss_mb": peak_rss_mb(),
    }


def worker_tokenmill(dataset: str, tokenizer: str, root: str, seq_len: int) -> dict:
    from pipeline import observe
    from pipeline.dataset import Dataset
    from pipeline.stage import run_stage
    from pipeline.tokenize import TokenizeConfig, TokenizeStage

    gx = {}
    observe.add_reporter(lambda event, data: gx.update(data) if event == "validation" else None)
    cfg = TokenizeConfig(tokenizer="pretrained", tokenizer_path=tokenizer, seq_len=seq_len)
    t0 = time.perf_counter()
    res = run_stage(TokenizeStage(), cfg, root, {"decontaminate": Dataset(Path(dataset))})
    seconds = time.perf_counter() - t0
    totals = res.dataset.manifest["totals"]
    return {
        "seconds": seconds,
        "gx_seconds": gx.get("seconds", 0.0),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", nargs="+", type=Path, default=[DEFAULT_INPUT])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=None, help="Scratch directory (default: a temporary one)")
    args = ap.parse_args()
    missing = [p for p in args.input if not p.is_file()]
    if missing:
        raise SystemExit(f"missing input {missing[0]}; the default lives in {CORPORA}")
    work = args.work or Path(tempfile.mkdtemp(prefix="tokenize_vs_raw-"))
    one, big, tok = setup(args.input, work, args.scale, args.vocab_size)

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
    med = {
        k: {m: statistics.median(x[m] for x in v) for m in ("seconds", "peak_rss_mb")}
        for k, v in runs.items()
    }
    gx = {k: statistics.median(x["gx_seconds"] for x in runs[k]) for k in ("tm_1x", "tm_big")}
    mb = {k: runs[k][0]["bytes"] / 1e6 for k in runs}
    for k, v in runs.items():
        print(
            f"{k:8s} "
            + "  ".join(f"{x['seconds']:.2f}s" for x in v)
            + f"   {mb[k]:.1f} MB   peak {med[k]['peak_rss_mb']:.0f} MB"
        )
    assert all(not x["cached"] for k in ("tm_1x", "tm_big") for x in runs[k])
    assert runs["raw_1x"][0]["tokens"] == runs["tm_1x"][0]["tokens"], (
        "raw and tokenmill disagree on token counts"
    )
    ratio_1x = med["raw_1x"]["seconds"] / med["tm_1x"]["seconds"]
    ratio_big = med["raw_big"]["seconds"] / med["tm_big"]["seconds"]
    ratio_big_no_gx = med["raw_big"]["seconds"] / (med["tm_big"]["seconds"] - gx["tm_big"])
    x = f"{args.scale}x"
    rss = {k: med[k]["peak_rss_mb"] for k in med}
    print(
        f"raw_mb_s={mb['raw_big'] / med['raw_big']['seconds']:.2f} "
        f"tokenmill_mb_s={mb['tm_big'] / med['tm_big']['seconds']:.2f} "
        f"gx_seconds_1x={gx['tm_1x']:.2f} gx_seconds_{x}={gx['tm_big']:.2f} "
        f"ratio_vs_raw_excl_gx={ratio_big_no_gx:.3f} raw_peak_rss_mb_{x}={rss['raw_big']:.0f}"
    )
    # ratio_vs_raw is measured on the scaled input, where GX's fixed import cost is amortized;
    # the 1x figure beside it shows that fixed cost.
    print(
        f"ratio_vs_raw={ratio_big:.3f} ratio_vs_raw_1x={ratio_1x:.3f} scale={args.scale} "
        f"peak_rss_mb={rss['tm_big']:.0f} peak_rss_mb_1x={rss['tm_1x']:.0f} "
        f"peak_rss_growth={rss['tm_big'] / rss['tm_1x']:.2f} cpus={os.cpu_count()}"
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
