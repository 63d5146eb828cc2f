"""The data path at scale: N GB of documents through ingest → dedup → annotate → filter → tokenize.

Input (built offline, not timed): documents recombined from the paragraphs of the shared web
sample and of the built-in corpus (standard-library docstrings and distribution READMEs; the
licence files are left out, being near-copies of each other). Paragraphs are grouped into blocks
of 200-2,000 characters, deduplicated, and bucketed by language (fastText, as annotate does); a
document draws at least four blocks without replacement from one language's bucket until it
reaches a length drawn from a log-normal (median 3 KB), gets a fresh id and URL, and so is new
text that no other document repeats (two documents share four blocks with negligible
probability). ``--dup-rate`` of the documents (default 5%) are planted near-duplicates of a
recent earlier document: 1% of the words replaced by other words of the same document, half of
them with a header or footer line added; the exact Jaccard of each planted pair's word 5-gram
sets (texts folded as dedup folds them) is kept, and only pairs at or above 0.85 are planted.

Then the data path's stage flows (ingest, dedup, annotate, filter, decontaminate, tokenize; the
labeled stage first, untimed, for decontaminate's evaluation texts) run in this process through
Prefect (a temporary local API, threads engine with the default two workers, default stage
configs: web-scale filter thresholds, every annotate signal, a 4,096-token BPE), one after
another, each on the dataset the one before published. Per stage: MB/s and docs/s of its input documents' text by wall clock and per CPU
second of the process tree, peak RSS of the whole process tree (this process and every child:
the Prefect API server, DuckDB and tokenizers threads are inside it), bytes the stage published
and bytes written to disk (staging and scratch included). Dedup's recall of the planted
near-duplicates is the share of them it removed; ``unplanted_removed`` counts other documents it
removed (accidental near-copies among the recombined ones).

Each size runs in a fresh child process (so one run's memory never counts in another's). The
0.01 GB reference runs first in the same invocation, unless ``--reference FILE.json`` gives a
saved one (``--save FILE.json`` writes this run's figures). ``<stage>_scaling`` is the stage's
MB/s at N GB divided by its MB/s at 0.01 GB, by wall clock; ``<stage>_cpu_scaling`` the same per
CPU second, which another job's load on a shared machine disturbs far less.

    python benchmarks/scale_data.py --gb 1 [--reference ref.json] [--save out.json] [--workdir DIR]
    python benchmarks/scale_data.py --result out.json --reference ref.json   # saved figures, no run

Last line: ``peak_rss_mb=… dup_recall=…`` then per stage ``<stage>_mb_s=… <stage>_scaling=…``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# A loaded machine can take longer than the default 20 s to start the temporary API.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_WEB = ROOT.parent / "shared" / "corpora" / "web" / "cc_main_2019-30_sample.jsonl"
# The data path; tokenize reads decontaminate's output, which also needs the labeled stage's
# evaluation texts (the default built-in task, built before the timed stages: not measured).
STAGES = ("ingest", "dedup", "annotate", "filter", "decontaminate", "tokenize")
SETUP_STAGES = ("labeled",)
REFERENCE_GB = 0.01

MIN_BLOCK, MAX_BLOCK = 200, 2_000  # characters per recombined block
MIN_BUCKET = 300  # blocks a language needs to be a bucket of its own (else: "mixed")
MEDIAN_DOC, DOC_SIGMA, MIN_DOC, MAX_DOC = 3_000, 0.8, 600, 40_000
MIN_BLOCKS = 4
PLANT_MIN_WORDS, PLANT_EDIT_RATE, PLANT_MIN_JACCARD = 200, 0.01, 0.85
# Shares of documents by source kind: mostly web pages, as in a web-scale corpus ("mixed" holds
# blocks of languages too rare for a bucket of their own).
KIND_SHARE = {"web": 0.7, "docstrings": 0.14, "readmes": 0.14, "mixed": 0.02}
RECENT = 2_048  # planted near-duplicates copy one of this many latest documents
HEADERS = (
    "Posted on July 14, 2019 by admin",
    "Updated: 2019-07-17 12:15",
    "Share this: Facebook Twitter Pinterest Email",
    "Leave a comment Cancel reply",
    "Copyright 2019. All rights reserved.",
)


# ------------------------------------------------------------------------------------------------
# The input


def _blocks(text: str) -> list[str]:
    """A text's paragraphs grouped (short ones with the next) or cut (long ones) into blocks."""
    out, cur = [], ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        while len(para) > MAX_BLOCK:
            cut = max(para.rfind("\n", 0, MAX_BLOCK), para.rfind(". ", 0, MAX_BLOCK) + 1)
            cut = cut if cut > MIN_BLOCK else MAX_BLOCK
            out.append(para[:cut].strip())
            para = para[cut:].strip()
        cur = f"{cur}\n\n{para}" if cur else para
        if len(cur) >= MIN_BLOCK:
            out.append(cur)
            cur = ""
    if len(cur) >= MIN_BLOCK // 2:
        out.append(cur)
    return [b for b in out if b]


def block_pool(web: Path | None, builtin: bool = True) -> dict[str, list[str]]:
    """Distinct blocks by bucket (source kind and language), in a deterministic order.

    A document draws all its blocks from one bucket, so it reads like one kind of page: a web
    page, a module's docstrings, a package README, each in one language.
    """
    texts: list[tuple[str, str]] = []
    if web is not None:
        with web.open(encoding="utf-8") as f:
            for line in f:
                t = json.loads(line).get("text") if line.strip() else None
                if isinstance(t, str):
                    texts.append(("web", t))
    if builtin:
        from pipeline.sources import builtin as corpus

        cfg = corpus.DefaultCorpusConfig(licence_files=False)
        for unit in corpus.units(cfg):
            kind = "docstrings" if unit["part"] == "stdlib" else "readmes"
            texts += [(kind, item["text"]) for _, item in corpus.read_unit(unit, cfg)]
    seen: set[str] = set()
    blocks: list[tuple[str, str]] = []
    for kind, t in texts:
        for b in _blocks(t.replace("\r\n", "\n")):
            if b not in seen:
                seen.add(b)
                blocks.append((kind, b))
    from pipeline.filter.langid import classify

    langs, _ = classify([b for _, b in blocks])
    keys = [f"{kind}:{lang}" for (kind, _), lang in zip(blocks, langs, strict=True)]
    for fallback in (lambda k: k.split(":")[0] + ":mixed", lambda k: "mixed"):
        counts: dict[str, int] = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        keys = [k if counts[k] >= MIN_BUCKET else fallback(k) for k in keys]
    pool: dict[str, list[str]] = {}
    for (_, b), key in zip(blocks, keys, strict=True):
        pool.setdefault(key, []).append(b)
    return dict(sorted(pool.items()))


def bucket_weights(pool: dict[str, list[str]]) -> list[float]:
    """How often a document comes from each bucket: KIND_SHARE per source kind, then by bytes."""
    size = {k: sum(len(b) for b in v) for k, v in pool.items()}
    kind_size: dict[str, int] = {}
    for k, n in size.items():
        kind = k.split(":")[0]
        kind_size[kind] = kind_size.get(kind, 0) + n
    share = {kind: KIND_SHARE.get(kind, 0.0) for kind in kind_size}
    total = sum(share.values()) or 1.0
    return [share[k.split(":")[0]] / total * n / kind_size[k.split(":")[0]] for k, n in size.items()]


def folded_words(texts: list[str]) -> list[list[str]]:
    """Texts folded as dedup folds them, as word lists (the ground truth's shingle source)."""
    import pyarrow as pa

    from pipeline.dedup.config import NormalizeConfig
    from pipeline.dedup.normalize import fold_collapse

    col = fold_collapse(pa.array(texts, pa.large_string()), NormalizeConfig())
    return [col.doc_bytes(i).decode().split() for i in range(len(col))]


def jaccard5(a: list[str], b: list[str]) -> float:
    sa = {tuple(a[i : i + 5]) for i in range(max(1, len(a) - 4))}
    sb = {tuple(b[i : i + 5]) for i in range(max(1, len(b) - 4))}
    return len(sa & sb) / max(1, len(sa | sb))


def near_copy(rng: random.Random, text: str) -> str:
    """1% of the words replaced by other words of the text; half the time a header or footer."""
    parts = re.split(r"(\s+)", text)
    words = list(range(0, len(parts), 2))
    for i in rng.sample(words, max(1, round(len(words) * PLANT_EDIT_RATE))):
        parts[i] = parts[rng.choice(words)]
    out = "".join(parts)
    r = rng.random()
    if r < 0.25:
        out = rng.choice(HEADERS) + "\n\n" + out
    elif r < 0.5:
        out = out + "\n\n" + rng.choice(HEADERS)
    return out


def build_input(
    path: Path, gb: float, seed: int = 0, dup_rate: float = 0.05, web: Path | None = DEFAULT_WEB
) -> dict[str, Any]:
    """Write ``gb`` GB (text bytes, UTF-8) of documents to a JSONL file; planted pairs beside it."""
    rng = random.Random(seed)
    pool = block_pool(web if web and web.is_file() else None)
    weights = bucket_weights(pool)
    buckets = list(pool)
    target = int(gb * 1e9)
    written = docs = planted = 0
    recent: deque[tuple[str, str, str]] = deque(maxlen=RECENT)
    planted_path = path.with_suffix(".planted.jsonl")
    jaccards: list[float] = []
    with path.open("w", encoding="utf-8") as out, planted_path.open("w", encoding="utf-8") as pl:
        while written < target:
            doc_id = f"scale-{seed}-{docs:09d}"
            text, original = None, None
            if recent and rng.random() < dup_rate:
                original, bucket, base = recent[rng.randrange(len(recent))]
                text = near_copy(rng, base)
                a, b = folded_words([base, text])
                j = jaccard5(a, b)
                if j < PLANT_MIN_JACCARD:
                    text, original = None, None
                else:
                    jaccards.append(j)
            if text is None:
                bucket = rng.choices(buckets, weights)[0]
                blocks = pool[bucket]
                want = min(MAX_DOC, max(MIN_DOC, int(rng.lognormvariate(math.log(MEDIAN_DOC), DOC_SIGMA))))
                chosen, size = [], 0
                for i in rng.sample(range(len(blocks)), min(len(blocks), 64)):
                    chosen.append(blocks[i])
                    size += len(blocks[i]) + 2
                    if size >= want and len(chosen) >= MIN_BLOCKS:
                        break
                text = "\n\n".join(chosen)
                if len(text.split()) >= PLANT_MIN_WORDS:
                    recent.append((doc_id, bucket, text))
            rec = {"id": doc_id, "text": text, "url": f"https://scale.example/{bucket}/{doc_id}"}
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if original is not None:
                pl.write(json.dumps({"id": doc_id, "original": original, "jaccard": round(j, 4)}) + "\n")
                planted += 1
            written += len(text.encode("utf-8"))
            docs += 1
    return {
        "docs": docs,
        "text_bytes": written,
        "file_bytes": path.stat().st_size,
        "planted": planted,
        "planted_jaccard_min": round(min(jaccards), 4) if jaccards else None,
        "planted_jaccard_mean": round(sum(jaccards) / len(jaccards), 4) if jaccards else None,
        "pool_blocks": {k: len(v) for k, v in pool.items()},
        "planted_path": str(planted_path),
    }


# ------------------------------------------------------------------------------------------------
# Measuring the process tree


class TreeMonitor:
    """Samples the RSS of this process and all its descendants (every 0.2 s) in a thread."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.window_peak = 0
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tree(self) -> list:
        try:
            return [self.me, *self.me.children(recursive=True)]
        except Exception:
            return [self.me]

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            try:
                total += p.memory_info().rss
            except Exception:
                pass
        return total

    def cpu(self) -> float:
        """CPU seconds of the tree: every live process in it and the exited children each waited
        for (a pool's fork server reaps the workers it forked, not this process)."""
        total = 0.0
        for p in self.tree():
            try:
                c = p.cpu_times()
                total += c.user + c.system + c.children_user + c.children_system
            except Exception:
                pass
        return total

    def written(self) -> int:
        """Bytes this process and its live children wrote to storage so far."""
        total = 0
        for p in self.tree():
            try:
                total += p.io_counters().write_bytes
            except Exception:
                pass
        return total

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            r = self.rss()
            self.peak = max(self.peak, r)
            self.window_peak = max(self.window_peak, r)
            if n % 25 == 0:
                self.loads.append(os.getloadavg()[0])
            n += 1
            self._stop.wait(self.interval)

    def start(self) -> TreeMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def window(self) -> tuple[int, list[float]]:
        """Peak RSS and load samples since the last call."""
        peak, loads = self.window_peak, self.loads
        self.window_peak, self.loads = self.rss(), []
        return peak, loads


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def text_stats(path: str) -> tuple[int, int]:
    """(rows, UTF-8 text bytes) of a published dataset's data view."""
    import pyarrow.compute as pc

    from pipeline.dataset import Dataset

    ds = Dataset(Path(path))
    rows = size = 0
    for b in ds.iter_batches(columns=["text"], batch_size=16_384):
        rows += b.num_rows
        size += pc.sum(pc.binary_length(b.column("text"))).as_py() or 0
    return rows, size


def dedup_recall(dedup_path: str, planted_path: Path) -> dict[str, Any]:
    """Share of the planted near-duplicates dedup removed, and how many others it removed."""
    import pyarrow.parquet as pq

    from pipeline.dataset import REJECTS_VIEW, Dataset

    planted = {}
    with planted_path.open() as f:
        for line in f:
            r = json.loads(line)
            planted[r["id"]] = r["original"]
    ds = Dataset(Path(dedup_path))
    found = to_original = other = 0
    for i in range(ds.num_shards(REJECTS_VIEW)):
        t = pq.read_table(ds.shard_path(i, REJECTS_VIEW), columns=["id", "duplicate_of"]).to_pydict()
        for doc, dup_of in zip(t["id"], t["duplicate_of"], strict=True):
            if doc in planted:
                found += 1
                to_original += planted[doc] == dup_of
            else:
                other += 1
    return {
        "planted": len(planted),
        "found": found,
        "kept_original": to_original,
        "recall": found / len(planted) if planted else 1.0,
        "unplanted_removed": other,
    }


# ------------------------------------------------------------------------------------------------
# One size, in this process


def warm_up() -> None:
    """Pay once-per-process costs before any timing: the temporary Prefect API, GX's import."""
    from prefect import flow

    from pipeline.validation import _import_gx

    @flow(name="warm_up")
    def nothing() -> None:
        return None

    nothing()
    _import_gx()


def run_one(gb: float, workdir: Path, seed: int, dup_rate: float, web: Path | None) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    jsonl = workdir / "input.jsonl"
    t0 = time.perf_counter()
    built = build_input(jsonl, gb, seed, dup_rate, web)
    built["build_s"] = round(time.perf_counter() - t0, 1)
    print(f"input: {json.dumps(built)}", flush=True)

    from flows.engines import task_runner
    from flows.stages import STAGE_FLOWS
    from pipeline.config import load_config

    warm_up()

    source = json.dumps([{"path": str(jsonl), "format": "jsonl", "id_field": "id"}])
    cfg = load_config(None, [f"ingest.sources={source}"])
    root = workdir / "data"
    shutil.rmtree(root, ignore_errors=True)  # every stage must do its work, never a cache hit
    from pipeline.stages import BY_NAME

    summaries: dict[str, dict] = {}
    for name in SETUP_STAGES:
        flow = STAGE_FLOWS[name].with_options(task_runner=task_runner(cfg.engine))
        summaries[name] = flow(config=cfg.stage_config(name), data_dir=str(root), inputs={})
    monitor = TreeMonitor().start()
    stages: dict[str, Any] = {}
    for name in STAGES:
        inputs = {up: summaries[up]["path"] for up in BY_NAME[name].inputs}
        if name == "ingest":
            rows_in, bytes_in = built["docs"], built["text_bytes"]
        else:
            rows_in, bytes_in = text_stats(inputs[BY_NAME[name].inputs[0]])
        flow = STAGE_FLOWS[name].with_options(task_runner=task_runner(cfg.engine))
        monitor.window()
        cpu0, io0, w0 = monitor.cpu(), monitor.written(), time.perf_counter()
        summary = flow(config=cfg.stage_config(name), data_dir=str(root), inputs=inputs)
        wall = time.perf_counter() - w0
        cpu = monitor.cpu() - cpu0
        written = monitor.written() - io0
        peak, loads = monitor.window()
        assert not summary["cached"], summary
        summaries[name] = summary
        version = Path(summary["path"]).parent
        stages[name] = {
            "rows_in": rows_in,
            "mb_in": round(bytes_in / 1e6, 3),
            "rows_out": summary["rows_out"],
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "mb_s": round(bytes_in / 1e6 / wall, 3),
            "docs_s": round(rows_in / wall, 1),
            "cpu_mb_s": round(bytes_in / 1e6 / cpu, 3) if cpu else None,
            "peak_rss_mb": round(peak / 2**20),
            "published_mb": round(dir_bytes(version) / 1e6, 1),
            "written_mb": round(written / 1e6, 1),
            "load1": round(sum(loads) / len(loads), 1) if loads else round(os.getloadavg()[0], 1),
        }
        print(f"{name}: {json.dumps(stages[name])}", flush=True)
    monitor.stop()
    recall = dedup_recall(summaries["dedup"]["path"], Path(built["planted_path"]))
    print(f"dedup recall: {json.dumps(recall)}", flush=True)
    return {
        "gb": gb,
        "input": built,
        "stages": stages,
        "peak_rss_mb": round(monitor.peak / 2**20),
        "dup": recall,
        "cores": os.cpu_count(),
    }


def run_child(gb: float, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One size in a fresh process (its memory is its own), figures read back from a JSON file."""
    out = workdir / f"result-{gb:g}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--gb",
        str(gb),
        "--seed",
        str(args.seed),
        "--dup-rate",
        str(args.dup_rate),
        "--web",
        str(args.web),
        "--one",
        str(out),
        "--workdir",
        str(workdir / f"gb-{gb:g}"),
    ]
    subprocess.run(cmd, check=True)
    if not args.keep:
        shutil.rmtree(workdir / f"gb-{gb:g}", ignore_errors=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, help="GB of document text to build and run")
    ap.add_argument("--reference", type=Path, help=f"saved figures of a {REFERENCE_GB} GB run (--save)")
    ap.add_argument("--save", type=Path, help="write this run's figures (JSON) here")
    ap.add_argument(
        "--result", type=Path, help="report these saved figures (--save) against --reference; runs nothing"
    )
    ap.add_argument("--workdir", type=Path, help="where inputs and data roots go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the inputs and datasets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dup-rate", type=float, default=0.05, help="share of planted near-duplicates")
    ap.add_argument("--web", type=Path, default=DEFAULT_WEB, help="the web sample JSONL (optional)")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child mode: run one size, write JSON
    args = ap.parse_args()
    if not args.web.is_file():
        print(f"{args.web} is absent: building from the built-in corpus alone", file=sys.stderr)

    if args.one:
        result = run_one(args.gb, args.workdir, args.seed, args.dup_rate, args.web)
        args.one.write_text(json.dumps(result, indent=1))
        return

    if args.result:  # report saved figures against the reference, no run
        result = json.loads(args.result.read_text())
        ref = json.loads(args.reference.read_text()) if args.reference else result
        report(result, ref)
        return

    if args.gb is None:
        ap.error("--gb is required (unless --result reports saved figures)")
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tokenmill-scale-")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.reference:
            ref = json.loads(args.reference.read_text())
        elif math.isclose(args.gb, REFERENCE_GB):
            ref = None
        else:
            ref = run_child(REFERENCE_GB, args, args.workdir)
        result = run_child(args.gb, args, args.workdir)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.save:
        args.save.write_text(json.dumps(result, indent=1))
    report(result, ref or result)


def report(result: dict[str, Any], ref: dict[str, Any]) -> None:
    """The table, then the last line. A stage missing from either run (a run saved before the
    stage was in the data path) is left out of both."""
    print(
        f"{'stage':>13} {'MB in':>9} {'MB/s':>7} {'docs/s':>8} {'CPU MB/s':>8} {'peak RSS':>8} "
        f"{'published':>9} {'written':>9} {'load':>5} {'scaling':>7} {'cpu scal.':>9}"
    )
    line: dict[str, Any] = {
        "peak_rss_mb": result["peak_rss_mb"],
        "dup_recall": round(result["dup"]["recall"], 4),
    }
    for name in STAGES:
        if name not in result["stages"] or name not in ref["stages"]:
            continue
        s, r = result["stages"][name], ref["stages"][name]
        scaling = s["mb_s"] / r["mb_s"]
        cpu_scaling = s["cpu_mb_s"] / r["cpu_mb_s"] if s["cpu_mb_s"] and r["cpu_mb_s"] else float("nan")
        print(
            f"{name:>13} {s['mb_in']:9.1f} {s['mb_s']:7.2f} {s['docs_s']:8.0f} {s['cpu_mb_s'] or 0:8.2f} "
            f"{s['peak_rss_mb']:6d}MB {s['published_mb']:7.0f}MB {s['written_mb']:7.0f}MB {s['load1']:5.1f} "
            f"{scaling:7.2f} {cpu_scaling:9.2f}"
        )
        line[f"{name}_mb_s"] = round(s["mb_s"], 3)
        line[f"{name}_scaling"] = round(scaling, 2)
        line[f"{name}_cpu_scaling"] = round(cpu_scaling, 2)
    line.update(
        gb=result["gb"],
        docs=result["input"]["docs"],
        ref_peak_rss_mb=ref["peak_rss_mb"],
        ref_dup_recall=round(ref["dup"]["recall"], 4),
        unplanted_removed=result["dup"]["unplanted_removed"],
        load1=round(sum(s["load1"] for s in result["stages"].values()) / len(result["stages"]), 1),
    )
    print(" ".join(f"{k}={v}" for k, v in line.items()))


if __name__ == "__main__":
    main()
