"""Decontamination recall, speed and memory: tokenmill's decontaminate stage against datatrove's.

Corpus: the input documents (default: the shared Common Crawl sample) with ``--plant`` of them
carrying an evaluation sentence in their middle, re-cased and re-punctuated (the way copies turn
up in crawled pages). Evaluation texts: the labeled sentences (default: the shared UCI sentiment
files, 3,000 short reviews), as one ``eval_sets`` source each, and the labeled stage's
validation and test splits of them. Both sides use word n-grams of ``--n`` words (8: the
sentences are short).

* recall: the share of planted documents each method rejects;
* agreement: documents rejected by one method and not the other, and why (tokenmill also
  matches eval texts shorter than n words whole, which datatrove skips);
* speed: CPU seconds of the stage's scan (read, fold, hash, look up, write the clean shard and the
  rejects; ``stage_``: the whole stage, index and validation included) vs datatrove's
  ``NGramsDecontFilter.filter`` over the same documents (its index built with its own
  normalisation, word tokenizer and hash, as its indexer does), one process each;
* memory: each side in a fresh process on 1x and ``--scale``x input (the corpus repeated with
  new ids), and tokenmill alone on twice that, peak RSS: the stage streams batches of
  ``batch_docs`` documents, so past one full batch its memory must not grow with the input.

Usage: python benchmarks/decontaminate_vs_datatrove.py [--docs FILE.jsonl] [--eval FILE ...]
           [--n 8] [--plant 200] [--scale 10]
The last line is key=value pairs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"


def load_eval(paths: list[Path]) -> list[str]:
    """The sentences of tab-separated `sentence<TAB>label` files with a header."""
    out = []
    for p in paths:
        lines = p.read_text(encoding="utf-8").splitlines()[1:]
        out += [ln.split("\t")[0] for ln in lines if ln.strip()]
    return out


def build_corpus(docs: Path, evals: list[str], n: int, plant: int, scale: int, out: Path) -> dict[str, str]:
    """The corpus at ``scale`` copies; returns planted doc id -> the sentence planted in it."""
    rng = random.Random(0)
    base = [json.loads(ln) for ln in docs.open(encoding="utf-8") if ln.strip()]
    long_enough = [e for e in evals if len(e.split()) >= n + 2]
    chosen = rng.sample(range(len(base)), min(plant, len(base)))
    planted: dict[str, str] = {}
    with out.open("w", encoding="utf-8") as f:
        for copy in range(scale):
            for i, d in enumerate(base):
                text = d.get("text") or ""
                doc_id = f"{copy}:{d.get('id', i)}"
                if i in chosen and copy == 0:
                    s = rng.choice(long_enough)
                    s = s.upper() if rng.random() < 0.5 else s.replace(",", " ,").replace(".", "!")
                    mid = len(text) // 2
                    text = text[:mid] + "\n" + s + "\n" + text[mid:]
                    planted[doc_id] = s
                f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    return planted


# -- tokenmill, in its own process --------------------------------------------------------------------
def prepare_tokenmill(root: str, corpus: str, eval_paths: list[str]) -> dict:
    """Ingest the corpus and read the labeled sentences (published under ``root``)."""
    from pipeline.ingest.config import IngestConfig, SourceConfig
    from pipeline.ingest.stage import IngestStage
    from pipeline.labeled.config import LabeledConfig, LabeledSourceConfig
    from pipeline.labeled.stage import LabeledStage
    from pipeline.stage import run_stage

    ingest = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=corpus)]), root, {})
    sources = [
        LabeledSourceConfig(path=p, format="tsv", text_field="reviews", label_field="sentiment")
        for p in eval_paths
    ]
    lab = run_stage(LabeledStage(), LabeledConfig(sources=sources), root, {})
    return {"ingest": str(ingest.path), "labeled": str(lab.path)}


def run_tokenmill(root: str, inputs: dict, eval_paths: list[str], n: int) -> dict:
    """The decontaminate stage alone, in a fresh process (its peak RSS is the stage's)."""
    from pipeline.dataset import Dataset
    from pipeline.decontaminate.config import DecontaminateConfig, EvalSetConfig
    from pipeline.decontaminate.stage import DecontaminateStage
    from pipeline.stage import run_stage

    ingest, lab = Dataset(inputs["ingest"]), Dataset(inputs["labeled"])
    cfg = DecontaminateConfig(
        n=n, eval_sets=[EvalSetConfig(path=p, format="tsv", text_field="reviews") for p in eval_paths]
    )
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c0, t0 = time.process_time(), time.perf_counter()
    res = run_stage(DecontaminateStage(), cfg, root, {"filter": ingest, "labeled": lab})
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    import pyarrow.parquet as pq

    rejected = pq.read_table(res.path / "rejects", columns=["id", "detail"]).to_pylist()
    return {
        "cpu": cpu,
        "wall": wall,
        "scan_cpu": res.stats["scan_cpu_seconds"],
        "words": res.stats["words_scanned"],
        "index_entries": res.stats["index_entries"],
        "rejected": {r["id"]: json.loads(r["detail"])["match"] for r in rejected},
        "docs": res.counts["rows_in"],
        "rss_before_mb": rss0 / 1024,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# -- datatrove, in its own process --------------------------------------------------------------------
def run_datatrove(corpus: str, eval_paths: list[str], n: int) -> dict:
    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.text import ngrams, simplify_text
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    with tempfile.TemporaryDirectory() as index_dir:
        cfg = NGramsDecontConfig(n_grams=n)
        # datatrove hashes str n-grams, which the installed xxhash refuses: hash their UTF-8 bytes.
        raw_hash = create_hash_func(cfg.hash_config)
        tok = load_word_tokenizer("en")

        def hash_fn(text: str) -> int:
            return raw_hash(text.encode("utf-8"))

        hashes = set()
        for e in load_eval(
            [Path(p) for p in eval_paths]
        ):  # what NGramsDecontIndexer.compute_hashes does for a label without a query
            words = tok.word_tokenize(simplify_text(e, cfg.norm_config))
            hashes.update(map(hash_fn, map(" ".join, ngrams(words, n))))
        np.array(sorted(hashes), dtype=cfg.hash_config.np_descr).tofile(f"{index_dir}/sentiment.index.hashes")
        filt = NGramsDecontFilter(index_dir, config=cfg)
        filt.hash_func = hash_fn
        filt.load_index_hashes()
        docs = [json.loads(ln) for ln in open(corpus, encoding="utf-8")]
        c0, t0 = time.process_time(), time.perf_counter()
        rejected = [d["id"] for d in docs if filt.filter(Document(text=d["text"], id=d["id"])) is not True]
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {
        "cpu": cpu,
        "wall": wall,
        "rejected": rejected,
        "index_entries": len(hashes),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def in_process(fn: str, *args) -> dict:
    """Run one side in a fresh interpreter (its peak RSS is its own)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r});"
        f"import decontaminate_vs_datatrove as b; print('RESULT' + json.dumps(b.{fn}(*json.loads(sys.argv[1]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    if out.returncode or not lines:
        raise SystemExit(f"{fn} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=Path, default=CORPORA / "web" / "cc_main_2019-30_sample.jsonl")
    ap.add_argument("--eval", nargs="+", type=Path, default=sorted((CORPORA / "sentiment").glob("*.txt")))
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--plant", type=int, default=200)
    ap.add_argument("--scale", type=int, default=10)
    args = ap.parse_args()
    if not args.docs.is_file() or not args.eval or not all(p.is_file() for p in args.eval):
        raise SystemExit(f"missing input files; the defaults live in {CORPORA}")
    evals = load_eval(args.eval)
    work = Path(tempfile.mkdtemp(prefix="decontaminate-bench-"))
    results = {}
    for scale in (1, args.scale):
        corpus = work / f"corpus-{scale}x.jsonl"
        planted = build_corpus(args.docs, evals, args.n, args.plant, scale, corpus)
        mb = corpus.stat().st_size / 1e6
        root, evals_ = str(work / f"root-{scale}"), [str(p) for p in args.eval]
        ours = in_process(
            "run_tokenmill", root, in_process("prepare_tokenmill", root, str(corpus), evals_), evals_, args.n
        )
        peer = in_process("run_datatrove", str(corpus), [str(p) for p in args.eval], args.n)
        results[scale] = (ours, peer, planted, mb)
        print(
            f"{scale}x ({ours['docs']:,} docs, {mb:.1f} MB, {ours['words']:,} words): tokenmill scan "
            f"{ours['scan_cpu']:.2f} s CPU (stage {ours['cpu']:.2f} s CPU, {ours['wall']:.1f} s wall), peak RSS {ours['rss_mb']:.0f} MB "
            f"({ours['rss_before_mb']:.0f} MB after imports); datatrove filter {peer['cpu']:.2f} s CPU "
            f"({peer['wall']:.1f} s wall), peak RSS {peer['rss_mb']:.0f} MB",
            flush=True,
        )
    # Memory must stop growing past one full batch: tokenmill alone on twice the large input.
    scale = 2 * args.scale
    corpus = work / f"corpus-{scale}x.jsonl"
    build_corpus(args.docs, evals, args.n, args.plant, scale, corpus)
    root, evals_ = str(work / f"root-{scale}"), [str(p) for p in args.eval]
    huge = in_process(
        "run_tokenmill", root, in_process("prepare_tokenmill", root, str(corpus), evals_), evals_, args.n
    )
    results[scale] = (huge, None, {}, corpus.stat().st_size / 1e6)
    print(
        f"{scale}x ({huge['docs']:,} docs, {results[scale][3]:.1f} MB, {huge['words']:,} words): tokenmill scan "
        f"{huge['scan_cpu']:.2f} s CPU, peak RSS {huge['rss_mb']:.0f} MB",
        flush=True,
    )
    ours, peer, planted, mb = results[1]
    found = sum(1 for d in planted if d in ours["rejected"])
    peer_found = sum(1 for d in planted if d in set(peer["rejected"]))
    ours_set, peer_set = set(ours["rejected"]), set(peer["rejected"])
    only_ours = ours_set - peer_set
    whole = sum(1 for d in only_ours if ours["rejected"][d] != "ngram")
    print(
        f"planted {len(planted)}: tokenmill rejects {found}, datatrove {peer_found}; rejected by both "
        f"{len(ours_set & peer_set)}, only tokenmill {len(only_ours)} ({whole} by whole-text or exact match of "
        f"eval texts under {args.n} words), only datatrove {len(peer_set - ours_set)}"
    )
    big_ours, big_peer, _, big_mb = results[args.scale]
    print(
        " ".join(
            [
                f"recall={found / max(1, len(planted)):.4f}",
                f"peer_recall={peer_found / max(1, len(planted)):.4f}",
                f"only_tokenmill={len(only_ours)}",
                f"only_peer={len(peer_set - ours_set)}",
                f"speedup_cpu_vs_datatrove={big_peer['cpu'] / big_ours['scan_cpu']:.2f}",
                f"stage_speedup_cpu_vs_datatrove={big_peer['cpu'] / big_ours['cpu']:.2f}",
                f"mb_per_cpu_s={big_mb / big_ours['scan_cpu']:.2f}",
                f"rss_mb_1x={ours['rss_mb']:.0f}",
                f"rss_mb_{args.scale}x={big_ours['rss_mb']:.0f}",
                f"rss_mb_{2 * args.scale}x={results[2 * args.scale][0]['rss_mb']:.0f}",
                f"peer_rss_mb_{args.scale}x={big_peer['rss_mb']:.0f}",
                f"index_entries={ours['index_entries']}",
            ]
        )
    )


if __name__ == "__main__":
    main()
