"""Dedup accuracy, speed and memory: tokenmill's dedup stage against datasketch (and rensa).

Corpus: the input documents (default: the shared Common Crawl sample) followed by injected
near-duplicates of known Jaccard similarity: word substitutions, insertions, deletions and
boilerplate changes at random rates. Ground truth is the exact Jaccard of word 5-gram sets of
the folded texts, computed here with plain Python sets.

* accuracy: recall over injected pairs with J >= 0.85, and precision of every removal (its
  exact Jaccard to the document kept for it >= the threshold), for each method;
* speed: near-dup end to end on the same input in this process (tokenmill: the whole dedup
  stage, signatures + LSH + clusters + writing the output; datasketch/rensa: shingling, MinHash,
  LSH insert + query, union-find), one core (DuckDB, Arrow and rensa's rayon pool limited to one
  thread). tokenmill runs with its default signature backend (rensa when installed) and, as
  ``tokenmill_numpy``, with the numpy fallback. Each method's best wall time and, separately,
  its best CPU time over the repeats: on a shared machine the CPU time of this one-thread work
  is the steadier measure of one core's throughput;
* memory: the stage in a fresh process on 1x and 10x input (10x = 9 more copies of the corpus
  with 30% of the words replaced, so they are new documents), wall time and peak RSS.

Usage: python benchmarks/dedup_vs_datasketch.py [--input FILE.jsonl ...] [--scale 10] [--no-scaling]
The last line is key=value pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core: before rensa is imported
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_INPUT = ROOT.parent / "shared" / "corpora" / "web" / "cc_main_2019-30_sample.jsonl"
NGRAM, NUM_PERM, BANDS, ROWS, THRESHOLD = 5, 112, 14, 8, 0.8
BOILERPLATE = [
    "Copyright 2019 All rights reserved. Privacy policy. Terms of use.",
    "Share this on Facebook Twitter Pinterest Email",
    "This website uses cookies to improve your experience. Accept Read more",
]


def load(paths: list[Path]) -> list[str]:
    texts = []
    for p in paths:
        for line in p.open(encoding="utf-8"):  # not splitlines(): texts hold U+2028
            t = json.loads(line).get("text") if line.strip() else None
            if isinstance(t, str) and t.strip():
                texts.append(t)
    return texts


def perturb(rng: random.Random, text: str, rate: float, vocab: list[str]) -> str:
    """An edited copy: substitutions, insertions, deletions and a boilerplate change."""
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            out.append(rng.choice(vocab))
        elif r < 2 * rate / 3:
            out += [w, rng.choice(vocab)]
        elif r < rate:
            continue
        else:
            out.append(w)
    body = " ".join(out)
    kind = rng.random()
    if kind < 0.3:
        body = rng.choice(BOILERPLATE) + "\n" + body
    elif kind < 0.6:
        body = body + "\n" + rng.choice(BOILERPLATE)
    return body


def build_corpus(base: list[str], seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    rng = random.Random(seed)
    vocab = sorted({w for t in base[:200] for w in t.split()})
    docs = list(base)
    injected = []
    candidates = [i for i, t in enumerate(base) if len(t.split()) >= 80]
    for i in rng.sample(candidates, min(len(candidates), 300)):
        for _ in range(rng.choice([1, 2])):
            rate = rng.choice([0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12])
            docs.append(perturb(rng, base[i], rate, vocab))
            injected.append((i, len(docs) - 1))
    return docs, injected


def scaled(base: list[str], copies: int) -> list[str]:
    """The corpus plus `copies` rewrites with 30% of the words replaced: new, distinct documents."""
    rng = random.Random(1)
    vocab = sorted({w for t in base[:200] for w in t.split()})
    out = list(base)
    for _ in range(copies):
        out += [" ".join(w if rng.random() > 0.3 else rng.choice(vocab) for w in t.split()) for t in base]
    return out


# -- ground truth -------------------------------------------------------------------------------
def folded(texts: list[str]) -> list[list[str]]:
    import pyarrow as pa

    from pipeline.dedup.config import NormalizeConfig
    from pipeline.dedup.normalize import fold_collapse

    col = fold_collapse(pa.array(texts), NormalizeConfig())
    return [col.doc_bytes(i).decode().split() for i in range(len(col))]


def shingle_set(words: list[str]) -> set[str]:
    if len(words) < NGRAM:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def true_jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def evaluate(
    removed: dict[int, int], sets: list[set[str]], injected: list[tuple[int, int]]
) -> dict[str, float]:
    """removed: doc -> the doc kept for it. Precision over removals, recall over injected pairs."""
    good = sum(true_jaccard(sets[d], sets[k]) >= THRESHOLD for d, k in removed.items())
    precision = good / len(removed) if removed else 1.0

    def root(d):
        return removed.get(d, d)

    out = {"precision": round(precision, 4), "removed": len(removed)}
    for name, lo in (("recall", 0.85), ("recall_at_threshold", THRESHOLD)):
        pairs = [(o, v) for o, v in injected if true_jaccard(sets[o], sets[v]) >= lo]
        hit = sum(v in removed and root(v) == root(o) for o, v in pairs)
        out[name] = round(hit / len(pairs), 4) if pairs else 1.0
        out[name + "_pairs"] = len(pairs)
    return out


# -- the methods --------------------------------------------------------------------------------
def write_jsonl(texts: list[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"doc{i}", "text": t}) + "\n")
    return path


def ingest(root: Path, src: Path):
    from pipeline.ingest.config import IngestConfig, SourceConfig
    from pipeline.ingest.stage import IngestStage
    from pipeline.stage import run_stage

    cfg = IngestConfig(sources=[SourceConfig(path=str(src), id_field="id")], shard_rows=4_000)
    return run_stage(IngestStage(), cfg, root, {})


def run_tokenmill(root: Path, ing, **over) -> tuple[float, dict[int, int], float, float]:
    """(near-dup seconds, removals, whole-stage seconds, near-dup CPU seconds). Near-dup = the phases up to clusters
    (signatures, exact, buckets, verify, cluster) with their Parquet and DuckDB work; the whole
    stage adds writing the output and the runner's validation and publishing."""
    import duckdb

    from pipeline.dedup import DedupConfig, DedupStage
    from pipeline.stage import run_stage

    phases: dict[str, tuple[float, float]] = {}

    def timed(name, fn, units):
        t, c = time.perf_counter(), time.process_time()
        out = [fn(u) for u in units]
        phases[name] = (time.perf_counter() - t, time.process_time() - c)
        return out

    cfg = DedupConfig(
        num_perm=NUM_PERM, bands=BANDS, rows=ROWS, threshold=THRESHOLD, duckdb_threads=1, **over
    )
    t0 = time.perf_counter()
    res = run_stage(DedupStage(), cfg, root, {"ingest": ing.dataset}, timed)
    seconds = time.perf_counter() - t0
    assert not res.cached
    glob = res.path / "rejects" / "*.parquet"
    rows = duckdb.sql(f"SELECT id, duplicate_of FROM read_parquet('{glob}')").fetchall()
    near = [sum(v[i] for k, v in phases.items() if k != "dedup.apply") for i in (0, 1)]
    return near[0], {int(d[3:]): int(k[3:]) for d, k in rows}, seconds, near[1]


def clusters_from_pairs(n: int, pairs) -> dict[int, int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: find(i) for i in range(n) if find(i) != i}


def run_datasketch(words: list[list[str]]) -> tuple[float, dict[int, int], float, float]:
    from datasketch import MinHash, MinHashLSH

    t0, c0 = time.perf_counter(), time.process_time()
    # MinHash.bulk: datasketch's documented way to hash many sets (shares the permutations).
    sigs = MinHash.bulk(([s.encode() for s in shingle_set(w)] for w in words), num_perm=NUM_PERM, seed=1)
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    with lsh.insertion_session() as session:
        for i, m in enumerate(sigs):
            session.insert(i, m)
    pairs = [(i, j) for i, m in enumerate(sigs) for j in lsh.query(m) if j != i]
    removed = clusters_from_pairs(len(words), pairs)
    seconds = time.perf_counter() - t0
    return seconds, removed, seconds, time.process_time() - c0


def run_rensa(words: list[list[str]]) -> tuple[float, dict[int, int], float, float] | None:
    try:
        import rensa
    except ImportError:
        return None
    t0, c0 = time.perf_counter(), time.process_time()
    lsh = rensa.RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=BANDS)
    sigs = []
    for i, w in enumerate(words):
        m = rensa.RMinHash(num_perm=NUM_PERM, seed=1)
        m.update(list(shingle_set(w)))
        lsh.insert(i, m)
        sigs.append(m)
    pairs = [(i, j) for i, m in enumerate(sigs) for j in lsh.query(m) if j != i]
    removed = clusters_from_pairs(len(words), pairs)
    seconds = time.perf_counter() - t0
    return seconds, removed, seconds, time.process_time() - c0


def child(texts_path: str) -> None:
    """One stage run in a fresh process: prints seconds and peak RSS (MB) as JSON."""
    import pyarrow as pa

    pa.set_cpu_count(1)
    with tempfile.TemporaryDirectory() as tmp:
        ing = ingest(Path(tmp), Path(texts_path))
        _, _, seconds, _ = run_tokenmill(Path(tmp), ing)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, "docs": ing.counts["rows_out"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, nargs="*", default=[DEFAULT_INPUT])
    ap.add_argument("--scale", type=int, default=10, help="input multiple for the memory measurement")
    ap.add_argument("--repeats", type=int, default=2, help="speed runs per method (best is kept)")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    missing = [p for p in args.input if not p.exists()]
    if missing:
        print(f"skipped: {missing[0]} is absent")
        return
    import pyarrow as pa

    from pipeline.dedup.minhash import resolve_backend

    pa.set_cpu_count(1)
    base = load(args.input)
    docs, injected = build_corpus(base)
    words = folded(docs)
    sets = [shingle_set(w) for w in words]
    mb = sum(len(t.encode()) for t in docs) / 1e6
    print(
        f"corpus: {len(base)} documents + {len(injected)} injected near-duplicates = {len(docs)} ({mb:.1f} MB)"
    )

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = write_jsonl(docs, Path(tmp) / "corpus.jsonl")
        ing = ingest(Path(tmp) / "prep", src)
        runs = {
            "tokenmill": lambda r: run_tokenmill(Path(tmp) / f"tm{r}", ing, verify="none"),
            "tokenmill_numpy": lambda r: run_tokenmill(
                Path(tmp) / f"tmn{r}", ing, verify="none", minhash_backend="numpy"
            ),
            "tokenmill_default": lambda r: run_tokenmill(Path(tmp) / f"tmd{r}", ing),
            "tokenmill_signature_verify": lambda r: run_tokenmill(
                Path(tmp) / f"tms{r}", ing, verify="signature"
            ),
            "datasketch": lambda r: run_datasketch(words),
            "rensa": lambda r: run_rensa(words),
        }
        for r in range(args.repeats):
            for name, fn in runs.items():
                got = fn(r)
                if got is None:
                    continue
                seconds, removed, whole, cpu = got
                best = results.get(name)
                if best is None or seconds < best["seconds"]:
                    results[name] = {"seconds": seconds, "whole_seconds": whole, "removed_map": removed}
                    results[name]["cpu_seconds"] = min(cpu, best["cpu_seconds"]) if best else cpu
                else:
                    best["cpu_seconds"] = min(cpu, best["cpu_seconds"])
    for name, r in results.items():
        r.update(evaluate(r.pop("removed_map"), sets, injected))
        r["docs_per_s"] = round(len(docs) / r["seconds"], 1)
        r["whole_docs_per_s"] = round(len(docs) / r["whole_seconds"], 1)
        r["cpu_docs_per_s"] = round(len(docs) / r["cpu_seconds"], 1)
        print(
            f"{name:24s} {r['docs_per_s']:9.1f} docs/s ({r['cpu_docs_per_s']:7.1f} per CPU s, "
            f"{r['whole_docs_per_s']:7.1f} whole stage)  precision {r['precision']:.4f}  "
            f"recall(J>=0.85) {r['recall']:.4f} of {r['recall_pairs']}  recall(J>={THRESHOLD}) "
            f"{r['recall_at_threshold']:.4f}  removed {r['removed']}"
        )
    ds = results["datasketch"]["docs_per_s"]
    speed = {k: round(v["docs_per_s"] / ds, 2) for k, v in results.items()}
    ds_cpu = results["datasketch"]["cpu_docs_per_s"]
    speed_cpu = {k: round(v["cpu_docs_per_s"] / ds_cpu, 2) for k, v in results.items()}
    print("speed relative to datasketch: " + ", ".join(f"{k} {v}x" for k, v in speed.items()))
    print("CPU-time speed relative to datasketch: " + ", ".join(f"{k} {v}x" for k, v in speed_cpu.items()))

    scaling = {}
    if not args.no_scaling:
        with tempfile.TemporaryDirectory() as tmp:
            for factor in (1, args.scale):
                path = write_jsonl(scaled(docs, factor - 1), Path(tmp) / f"x{factor}.jsonl")
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                scaling[factor] = json.loads(out.stdout.strip().splitlines()[-1])
                s = scaling[factor]
                print(
                    f"{factor:3d}x input: {s['docs']} docs, {s['seconds']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB"
                )
    d = results["tokenmill_default"]
    last = {
        "precision": d["precision"],
        "recall": d["recall"],
        "precision_noverify": results["tokenmill"]["precision"],
        "recall_noverify": results["tokenmill"]["recall"],
        "precision_datasketch": results["datasketch"]["precision"],
        "recall_datasketch": results["datasketch"]["recall"],
        "speedup_vs_datasketch": speed["tokenmill"],
        "speedup_numpy_vs_datasketch": speed["tokenmill_numpy"],
        "speedup_cpu_vs_datasketch": speed_cpu["tokenmill"],
        "speedup_numpy_cpu_vs_datasketch": speed_cpu["tokenmill_numpy"],
        "speedup_default_vs_datasketch": speed["tokenmill_default"],
        "speedup_whole_stage_vs_datasketch": round(results["tokenmill"]["whole_docs_per_s"] / ds, 2),
        "speedup_rensa_vs_datasketch": speed.get("rensa", "na"),
        "docs_per_s": results["tokenmill"]["docs_per_s"],
        "minhash_backend": resolve_backend("auto").split()[0],
        "datasketch_docs_per_s": ds,
    }
    if scaling:
        one, many = scaling[1], scaling[args.scale]
        last.update(
            peak_rss_mb=round(one["peak_rss_mb"]),
            peak_rss_mb_scaled=round(many["peak_rss_mb"]),
            rss_ratio=round(many["peak_rss_mb"] / one["peak_rss_mb"], 2),
            time_ratio=round(many["seconds"] / one["seconds"], 2),
            scale=args.scale,
        )
    print(" ".join(f"{k}={v}" for k, v in last.items()))


if __name__ == "__main__":
    main()
