"""Data stages on Dask: 1 vs 2 worker processes, and the Dask runner's overhead over threads.

Setup (not timed): the input is replicated ``--copies`` times with fresh ids (so ids stay
unique), ingested, and a BPE tokenizer is trained once on it. Ingest and dedup are also timed once
as plain serial stages (no Prefect) for the per-core table. Then, through the real Prefect stage
flows and the engine's task runners, on the same input, in one process:

* ``threads1``: `engine.runner=threads`, 1 worker thread (the local baseline);
* ``dask1`` / ``dask2``: a Dask LocalCluster with 1 or 2 single-threaded worker processes,
  started and warmed (modules imported) before timing, passed as `engine.address`.

Each engine runs annotate + filter (annotate reads the ingested documents) and tokenize (reads
the ingested documents, `tokenizer="pretrained"`, so the timed part is encode + pack + shuffle).
Throughput is input documents per wall second of the stage flows. Every engine's outputs must be
byte-identical (same fingerprint and shard sha256s), else the benchmark fails.
The last line holds ``scaling_2v1`` (dask2 / dask1 docs/s; 2.0 is perfect on 2 cores) and
``dask_overhead`` (dask1 / threads1 seconds: 1.0 is none, 1.25 is 25% slower), per stage group
and overall, and ``task_ms_*``: what the runner costs per unit of work (a no-op task), which
sets how big a shard must be for the overhead to vanish.

    python benchmarks/dask_scaling.py [--input FILE.jsonl] [--copies 3] [--shard-rows 200]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_INPUT = ROOT.parent / "shared" / "corpora" / "web" / "cc_main_2019-30_sample.jsonl"

from pipeline.config import EngineConfig
from pipeline.dataset import Dataset
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.stage import DedupStage
from pipeline.filter.config import AnnotateConfig, FilterConfig
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import run_stage
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.stage import TokenizeStage

ENGINES = ("threads1", "dask1", "dask2")


def replicate(src: Path, dst: Path, copies: int) -> None:
    """``copies`` copies of every record, each with an id of its own."""
    with src.open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    with dst.open("w", encoding="utf-8") as out:
        for k in range(copies):
            for n, r in enumerate(records):
                r = dict(r, id=f"{r.get('id', n)}-{k}")
                out.write(json.dumps(r, ensure_ascii=False) + "\n")


def text_mb(ds: Dataset) -> float:
    import pyarrow.compute as pc

    return (
        sum(
            pc.sum(pc.binary_length(b.column("text"))).as_py() or 0 for b in ds.iter_batches(columns=["text"])
        )
        / 1e6
    )


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_now(client) -> float:
    """CPU seconds used so far by this process and, given a Dask client, every worker process."""
    return _cpu_seconds() + (sum(client.run(_cpu_seconds).values()) if client else 0.0)


def measured(fn, client):
    """fn's result, wall seconds and CPU seconds (driver + workers): CPU time is per-core work,
    which the other jobs on a shared machine disturb far less than wall time."""
    c = cpu_now(client)
    out, wall = timed(fn)
    return out, wall, cpu_now(client) - c


def shard_hashes(path: str | Path) -> dict:
    m = Dataset(Path(path)).manifest
    return {
        "fingerprint": m["fingerprint"],
        "views": {v: [s["sha256"] for s in e["shards"]] for v, e in m["views"].items()},
    }


def run_engine(
    name: str, engine: EngineConfig, docs: Dataset, tokenizer: Path, work: Path, shard_rows: int, client=None
) -> dict:
    """Annotate + filter and tokenize through the stage flows on one engine; seconds and outputs."""
    from flows.engines import task_runner
    from flows.stages import annotate_flow, filter_flow, tokenize_flow

    root = str(work / name)
    docs_path = str(docs.path)
    tok_cfg = TokenizeConfig(
        tokenizer="pretrained", tokenizer_path=str(tokenizer), docs_shard_rows=shard_rows
    )
    out: dict = {"outputs": []}
    steps = [
        ("annotate", annotate_flow, AnnotateConfig(), lambda: {"dedup": docs_path}),
        (
            "filter",
            filter_flow,
            FilterConfig(shard_rows=shard_rows),
            lambda: {"annotate": out["annotate_path"]},
        ),
        ("tokenize", tokenize_flow, tok_cfg, lambda: {"decontaminate": docs_path}),
    ]
    for stage, stage_flow, cfg, inputs in steps:
        runner = stage_flow.with_options(task_runner=task_runner(engine))
        r, wall, cpu = measured(functools.partial(runner, config=cfg, data_dir=root, inputs=inputs()), client)
        assert not r["cached"], r
        out[f"{stage}_path"] = r["path"]
        out[f"{stage}_s"], out[f"{stage}_cpu_s"] = wall, cpu
        out["outputs"].append(shard_hashes(r["path"]))
    out["annotate_filter_s"] = out["annotate_s"] + out["filter_s"]
    out["annotate_filter_cpu_s"] = out["annotate_cpu_s"] + out["filter_cpu_s"]
    return out


def _noop(unit: int) -> int:
    return unit


def task_overhead_s(engine: EngineConfig, units: int = 20) -> float:
    """Seconds per unit of work that does nothing: what the runner itself costs per shard."""
    from prefect import flow

    from flows.engines import task_runner
    from flows.runtime import prefect_mapper

    @flow(name="noop", task_runner=task_runner(engine))
    def noop() -> list:
        return prefect_mapper("noop", _noop, list(range(units)))

    noop()  # the client connection and first-task setup are paid once per flow, not per unit
    _, seconds = timed(noop)
    return seconds / units


def warm_cluster(workers: int):
    """A LocalCluster of single-threaded worker processes, with the stage modules imported."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(cluster) as client:
        client.run(_import_stages)
    return cluster


def _import_stages() -> None:
    import flows.runtime  # noqa: F401
    import pipeline.filter.annotate
    import pipeline.filter.select
    import pipeline.tokenize.stage  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="a JSONL file with a `text` field")
    ap.add_argument("--copies", type=int, default=3, help="times the input is replicated (fresh ids)")
    ap.add_argument("--shard-rows", type=int, default=200, help="rows per shard: the unit of work")
    args = ap.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input} is absent: pass --input FILE.jsonl (the shared corpora are optional)")

    from distributed import Client

    from flows.engines import api_for_workers

    logging.getLogger("distributed").setLevel(logging.WARNING)  # cluster start/stop chatter
    with tempfile.TemporaryDirectory(prefix="tokenmill-dask-") as tmp:
        work = Path(tmp)
        jsonl = work / "input.jsonl"
        replicate(args.input, jsonl, args.copies)
        source = SourceConfig(path=str(jsonl), format="jsonl", id_field="id")
        ingest, t_ingest, c_ingest = measured(
            lambda: run_stage(
                IngestStage(), IngestConfig(sources=[source], shard_rows=args.shard_rows), work / "base", {}
            ),
            None,
        )
        docs = ingest.dataset
        n_docs, mb = docs.num_rows(), text_mb(docs)
        _, t_dedup, c_dedup = measured(
            lambda: run_stage(DedupStage(), DedupConfig(partitions=2), work / "base", {"ingest": docs}), None
        )
        trained = run_stage(TokenizeStage(), TokenizeConfig(), work / "base", {"decontaminate": docs})
        tokenizer = trained.path / "tokenizer"
        print(f"input: {n_docs} docs, {mb:.2f} MB of text, {len(docs.shard_paths())} shards", flush=True)
        print(
            f"serial ingest {ingest.counts['rows_in'] / t_ingest:.0f} docs/s; dedup {n_docs / t_dedup:.0f} docs/s",
            flush=True,
        )

        results, starts = {}, {}
        with api_for_workers(EngineConfig(runner="dask")):
            threads1 = EngineConfig(runner="threads", workers=1)
            overhead = {"threads1": task_overhead_s(threads1)}
            results["threads1"] = run_engine("threads1", threads1, docs, tokenizer, work, args.shard_rows)
            for n in (1, 2):
                cluster, starts[n] = timed(functools.partial(warm_cluster, n))
                with cluster:
                    engine = EngineConfig(runner="dask", workers=n, address=cluster.scheduler_address)
                    overhead[f"dask{n}"] = task_overhead_s(engine)
                    with Client(cluster) as client:
                        results[f"dask{n}"] = run_engine(
                            f"dask{n}", engine, docs, tokenizer, work, args.shard_rows, client
                        )
        for name in ENGINES[1:]:
            assert results[name]["outputs"] == results["threads1"]["outputs"], (
                f"{name}: outputs differ from threads1"
            )

    def rate(engine: str, key: str) -> float:
        return n_docs / results[engine][key]

    rows = []
    for key in ("annotate_s", "filter_s", "annotate_filter_s", "tokenize_s"):
        rows.append(f"{key[:-2]:>16}: " + "  ".join(f"{e} {rate(e, key):7.1f} docs/s" for e in ENGINES))
    print("\n".join(rows))
    rows = [
        f"{'CPU seconds':>16}: "
        + "  ".join(
            f"{e} {results[e]['annotate_filter_cpu_s']:.1f} + {results[e]['tokenize_cpu_s']:.1f}"
            for e in ENGINES
        )
        + "  (annotate+filter + tokenize, driver + workers)"
    ]
    print("\n".join(rows))
    # Per core: documents per CPU second of the whole stage (threads1: one process does it all).
    per_core = {
        "ingest": n_docs / c_ingest,
        "dedup": n_docs / c_dedup,
        "annotate": n_docs / results["threads1"]["annotate_cpu_s"],
        "filter": n_docs / results["threads1"]["filter_cpu_s"],
        "tokenize": n_docs / results["threads1"]["tokenize_cpu_s"],
    }
    print(
        "per core (docs per CPU second): "
        + "  ".join(f"{k} {v:.0f} docs/s {v * mb / n_docs:.2f} MB/s" for k, v in per_core.items())
    )
    print("runner cost per unit of work: " + "  ".join(f"{e} {overhead[e] * 1000:.0f} ms" for e in ENGINES))
    print(f"cluster start (warm imports): 1 worker {starts[1]:.1f} s, 2 workers {starts[2]:.1f} s")
    load = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    print(f"uptime: {load}")

    def total(e):
        return results[e]["annotate_filter_s"] + results[e]["tokenize_s"]

    out = {
        "docs": n_docs,
        "mb": round(mb, 2),
        "filter_threads1_docs_s": round(rate("threads1", "annotate_filter_s"), 1),
        "filter_dask1_docs_s": round(rate("dask1", "annotate_filter_s"), 1),
        "filter_dask2_docs_s": round(rate("dask2", "annotate_filter_s"), 1),
        "tokenize_threads1_docs_s": round(rate("threads1", "tokenize_s"), 1),
        "tokenize_dask1_docs_s": round(rate("dask1", "tokenize_s"), 1),
        "tokenize_dask2_docs_s": round(rate("dask2", "tokenize_s"), 1),
        "scaling_2v1_filter": round(
            results["dask1"]["annotate_filter_s"] / results["dask2"]["annotate_filter_s"], 2
        ),
        "scaling_2v1_tokenize": round(results["dask1"]["tokenize_s"] / results["dask2"]["tokenize_s"], 2),
        "scaling_2v1": round(total("dask1") / total("dask2"), 2),
        "dask_overhead_filter": round(
            results["dask1"]["annotate_filter_s"] / results["threads1"]["annotate_filter_s"], 2
        ),
        "dask_overhead_tokenize": round(
            results["dask1"]["tokenize_s"] / results["threads1"]["tokenize_s"], 2
        ),
        "dask_overhead": round(total("dask1") / total("threads1"), 2),
        "cpu_overhead": round(
            (results["dask1"]["annotate_filter_cpu_s"] + results["dask1"]["tokenize_cpu_s"])
            / (results["threads1"]["annotate_filter_cpu_s"] + results["threads1"]["tokenize_cpu_s"]),
            2,
        ),
        "task_ms_threads1": round(overhead["threads1"] * 1000),
        "task_ms_dask1": round(overhead["dask1"] * 1000),
        "identical": True,
        "load1": load.rsplit("load average:", 1)[-1].split(",")[0].strip(),
    }
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
