"""The quality classifier: tokenmill's hashed n-gram linear model against fastText, same folds.

Three real tasks, each scored by 5-fold cross-validation (folds by a hash of the text):

* ``web-filter``: web pages (the shared CC sample) labelled by whether tokenmill's default
  Gopher/C4/FineWeb rules keep them: can a classifier learn the heuristic filter from text?
* ``builtin-filter``: the built-in corpus (from a data root where `make run` published annotate
  and filter, ``--data-dir``), labelled by whether the built-in profile's filter kept them.
* ``prose-vs-web``: DCLM's setup in miniature: curated prose (tiny Shakespeare paragraphs, the
  UDHR's English paragraphs) against random web pages.

Both models see the same training documents. fastText (``fasttext.train_supervised``: word
bigrams as DCLM's classifier, dim 100, 2 threads; 5 epochs at lr 0.1 and 25 at lr 0.5, the better per task is
the peer) runs in its own interpreter given by
``--fasttext-python``, because the ``fasttext`` training package replaces the prediction-only
``fasttext`` module that language ID uses and must not be installed beside tokenmill:

    python3.11 -m venv /tmp/ftvenv && /tmp/ftvenv/bin/pip install fasttext-wheel "numpy<2"
    python benchmarks/quality_classifier.py --fasttext-python /tmp/ftvenv/bin/python [--data-dir data]

Reported per task: accuracy and AUC (mean over folds; AUC does not depend on a threshold), training seconds and scoring docs/s (one
process, the same machine, in the same run). The last line: ``key=value`` pairs, with the
minimum accuracy difference over tasks (``acc_linear_minus_fasttext_min``) and the speed ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "corpora"

from pipeline.filter.quality import accuracy_and_auc
from pipeline.filter.quality_model import Features, HashedLinear

FOLDS = 5
BUCKETS = 1 << 18

# fastText in two settings: its defaults with word bigrams (DCLM's classifier also used bigrams),
# and 25 epochs at lr 0.5, the usual setting on small data; the better one per task is the peer.
FASTTEXT_SETTINGS = {"ft_e5": {"epoch": 5, "lr": 0.1}, "ft_e25": {"epoch": 25, "lr": 0.5}}
FASTTEXT_SCRIPT = r"""
import json, sys, time
import fasttext
train, test, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
lines = [l.rstrip("\n") for l in open(test, encoding="utf-8")]
res = {}
for name, kw in settings.items():
    t0 = time.perf_counter()
    m = fasttext.train_supervised(input=train, wordNgrams=2, dim=100, minCount=1, verbose=0, thread=2, **kw)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = []
    for line in lines:
        labels, probs = m.predict(line, k=-1)
        p.append(float(dict(zip(labels, probs)).get("__label__pos", 0.0)))
    res[name] = {"p": p, "train_s": train_s, "score_s": time.perf_counter() - t0}
json.dump(res, open(out, "w"))
"""


def fasttext_line(text: str) -> str:
    return " ".join(text.lower().split())


def web_texts() -> list[str]:
    path = SHARED / "web" / "cc_main_2019-30_sample.jsonl"
    return [json.loads(line)["text"] for line in path.open(encoding="utf-8") if line.strip()]


def web_filter_task() -> tuple[list[str], np.ndarray]:
    import pyarrow as pa

    from pipeline.filter import AnnotateConfig, FilterConfig
    from pipeline.filter.annotate import annotate_table
    from pipeline.filter.rules import build_rules, judge

    texts = [t for t in web_texts() if t.strip()]
    n = len(texts)
    table = pa.table(
        {
            "id": [str(i) for i in range(n)],
            "text": texts,
            "source": ["web"] * n,
            "url": [None] * n,
            "meta": [None] * n,
            "source_file": ["web"] * n,
            "source_record": list(range(n)),
        }
    )
    cfg = AnnotateConfig(language=False, toxicity=False, pii=False, bias=False)
    annotated = annotate_table(table, cfg)
    rules = [r for r in build_rules(FilterConfig()) if r.column in annotated.column_names]
    kept, _ = judge(annotated, rules)
    return texts, kept.astype(float)


def builtin_filter_task(data_dir: Path, filter_ref: str) -> tuple[list[str], np.ndarray] | None:
    import duckdb

    from pipeline import catalog
    from pipeline.dataset import Dataset

    filt = catalog.find(data_dir, filter_ref)
    ann = Dataset(data_dir / filt.manifest["inputs"][0]["path"])
    con = duckdb.connect()
    rows = con.execute(
        "SELECT a.text, f.id IS NOT NULL FROM read_parquet($a) a LEFT JOIN "
        "(SELECT DISTINCT id FROM read_parquet($f)) f USING (id) ORDER BY a.id",
        {"a": [str(p) for p in ann.shard_paths()], "f": [str(p) for p in filt.shard_paths()]},
    ).fetchall()
    return [r[0] for r in rows], np.array([float(r[1]) for r in rows])


def prose_vs_web_task() -> tuple[list[str], np.ndarray]:
    shakespeare = (SHARED / "pretrain" / "tinyshakespeare.txt").read_text(encoding="utf-8").split("\n\n")
    prose = [p for p in shakespeare if len(p) >= 200]
    udhr = SHARED / "multilingual" / "udhr_24lang_paragraphs.jsonl"
    prose += [r["text"] for r in map(json.loads, udhr.open(encoding="utf-8")) if r.get("lang") == "en"]
    web = web_texts()
    rng = np.random.default_rng(0)
    prose = [prose[i] for i in rng.permutation(len(prose))[: len(web)]]
    return prose + web, np.concatenate([np.ones(len(prose)), np.zeros(len(web))])


def folds(texts: list[str]) -> np.ndarray:
    import xxhash

    return np.array([xxhash.xxh3_64_intdigest(t.encode(), 11) % FOLDS for t in texts])


def run_task(name_: str, texts: list[str], y: np.ndarray, ft_python: str | None) -> dict:
    fold = folds(texts)
    res: dict[str, list[float]] = {"acc_linear": [], "auc_linear": []}
    seconds: dict[str, float] = {"train_linear": 0.0, "score_linear": 0.0}
    scored = 0
    for k in range(FOLDS):
        tr, te = fold != k, fold == k
        tr_texts = [t for t, m in zip(texts, tr, strict=True) if m]
        te_texts = [t for t, m in zip(texts, te, strict=True) if m]
        t0 = time.perf_counter()
        # Unweighted log loss, as fastText trains (the stage weights classes equally, its
        # default sets being equally large; accuracy on the imbalanced web-filter task differs).
        model = HashedLinear.fit(Features.of_texts(tr_texts, BUCKETS), y[tr], BUCKETS, balanced=False)
        seconds["train_linear"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        p = model.score_texts(te_texts)
        seconds["score_linear"] += time.perf_counter() - t0
        scored += len(te_texts)
        acc, auc = accuracy_and_auc(y[te], p)
        res["acc_linear"].append(acc)
        res["auc_linear"].append(auc if auc is not None else float("nan"))
        if not ft_python:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            with open(d / "train.txt", "w", encoding="utf-8") as f:
                for t, label in zip(tr_texts, y[tr], strict=True):
                    f.write(f"__label__{'pos' if label else 'neg'} {fasttext_line(t)}\n")
            (d / "test.txt").write_text("".join(fasttext_line(t) + "\n" for t in te_texts), encoding="utf-8")
            (d / "ft.py").write_text(FASTTEXT_SCRIPT)
            cmd = [
                ft_python,
                str(d / "ft.py"),
                str(d / "train.txt"),
                str(d / "test.txt"),
                str(d / "out.json"),
            ]
            subprocess.run([*cmd, json.dumps(FASTTEXT_SETTINGS)], check=True)
            out = json.loads((d / "out.json").read_text())
        for name, o in out.items():
            acc, auc = accuracy_and_auc(y[te], np.array(o["p"]))
            res.setdefault(f"acc_{name}", []).append(acc)
            res.setdefault(f"auc_{name}", []).append(auc if auc is not None else float("nan"))
            seconds[f"train_{name}"] = seconds.get(f"train_{name}", 0.0) + o["train_s"]
            seconds[f"score_{name}"] = seconds.get(f"score_{name}", 0.0) + o["score_s"]
    row: dict = {"task": name_, "docs": len(texts), "positive": int(y.sum())}
    for key, vals in res.items():
        row[key] = statistics.fmean(vals)
    for key, s in seconds.items():
        if key.startswith("train_"):
            row[key + "_s"] = s
        else:
            row["docs_per_s_" + key.removeprefix("score_")] = scored / s
    if ft_python:
        best = max(FASTTEXT_SETTINGS, key=lambda n: row[f"acc_{n}"])
        row["fasttext_best"] = best
        row["acc_fasttext"] = row[f"acc_{best}"]
        row["docs_per_s_fasttext"] = row[f"docs_per_s_{best}"]
        row["train_fasttext_s"] = row[f"train_{best}_s"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fasttext-python", help="An interpreter with the fasttext training package")
    ap.add_argument(
        "--data-dir", type=Path, default=ROOT / "data", help="Root with published annotate+filter"
    )
    ap.add_argument("--filter", default="filter", help="The filter version whose decisions are the labels")
    args = ap.parse_args()
    if not (SHARED / "web" / "cc_main_2019-30_sample.jsonl").is_file():
        sys.exit(f"{SHARED} is absent: the shared corpora are needed")
    tasks = [("web-filter", *web_filter_task()), ("prose-vs-web", *prose_vs_web_task())]
    builtin = (
        builtin_filter_task(args.data_dir, args.filter)
        if (args.data_dir / "catalog.duckdb").is_file()
        else None
    )
    if builtin is not None:
        tasks.insert(1, ("builtin-filter", *builtin))
    rows = [run_task(name, texts, y, args.fasttext_python) for name, texts, y in tasks]
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    last = {}
    for r in rows:
        t = r["task"].replace("-", "_")
        last[f"acc_linear_{t}"] = round(r["acc_linear"], 4)
        if "acc_fasttext" in r:
            last[f"acc_fasttext_{t}"] = round(r["acc_fasttext"], 4)
    if args.fasttext_python:
        last["acc_linear_minus_fasttext_min"] = round(
            min(r["acc_linear"] - r["acc_fasttext"] for r in rows), 4
        )
        last["train_speed_ratio_min"] = round(
            min(r["train_fasttext_s"] / r["train_linear_s"] for r in rows), 3
        )
        last["score_speed_ratio_min"] = round(
            min(r["docs_per_s_linear"] / r["docs_per_s_fasttext"] for r in rows), 3
        )
    last["docs_per_s_linear_min"] = round(min(r["docs_per_s_linear"] for r in rows), 1)
    print(" ".join(f"{k}={v}" for k, v in last.items()))


if __name__ == "__main__":
    main()
