"""Does pretraining help, and at how many labels? Label-efficiency curves on labeled sentences.

Pretrains a small GPT through the real pipeline stages (ingest -> labeled -> decontaminate ->
tokenize -> pretrain) on an offline corpus from which every document sharing 8 words with a
validation or test sentence has been removed, then runs the fine-tune stage (the published
models) and the evaluate stage, whose label-efficiency curve trains the pretrained model and the
same architecture from scratch on ``--budgets`` labels per class, ``--seeds`` seeds each (each
seed draws its own subset and initialisation; both models share them), next to TF-IDF + logistic
regression and the majority class. Fine-tuning uses the fine-tune stage's default recipe (change
it with --finetune-steps, --adapt-steps or --ft KEY=VALUE; the curve's own settings with --curve
KEY=VALUE); curve units run in --workers processes of one torch thread each.

The default pretraining corpus is everything offline that is prose: the Common Crawl sample in
../shared/corpora/web, tiny Shakespeare and the built-in corpus (this Python's docstrings,
READMEs and licences), 3.3M train tokens with a 4,096-token BPE; the model is a 4x128 GPT
(1.3M parameters, dropout 0.1) trained for 6,000 steps of 2,048 tokens (3.7 epochs).

    benchmarks/finetune_transfer.py [--labeled FILE ...] [--budgets 8,32,128,all] [--seeds 3]
        [--pretrain-steps N] [--corpus FILE ...] [--no-builtin] [--adapt-steps N] [--ft KEY=VALUE ...]
        [--curve KEY=VALUE ...] [--root DIR [--pretrained DIR/datasets/pretrain/FINGERPRINT]]

Pretraining is most of the cost (54 minutes on one thread of a busy 2-core box). It checkpoints
every 500 steps, so an interrupted run resumes with the same ``--root``; ``--pretrained`` reuses
an earlier run's published pretrain dataset to iterate on fine-tuning alone.
benchmarks/transfer_probe.py measures what that checkpoint's frozen features know about the task.

Labeled files are CSV or TSV (by extension; ``.txt``: tab-separated when the first line has a
tab) with columns (label, sentence) or (sentence, label), a header line or none: the label column
is the one holding short tokens from a small set, detected from the first lines. Last line, per
budget b (``8``, ``32``, ``all`` ...): ``finetuned_acc_<b>= scratch_acc_<b>= gain_<b>= gain_sd_<b>=
tfidf_acc_<b>=``; then, for the ``all`` budget (else the largest), ``finetuned_acc=
scratch_acc= majority_acc=`` (means), ``finetuned_sd= scratch_sd=``, ``gain=`` and ``gain_sd=``
(the spread of the per-seed paired difference); ``best_budget=`` and ``holds=`` (1 when the largest
gain exceeds the seed spread); ``seeds=``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import itertools
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dataset import Dataset
from pipeline.decontaminate.config import DecontaminateConfig
from pipeline.decontaminate.stage import DecontaminateStage
from pipeline.evaluate.config import CurveConfig, EvaluateConfig
from pipeline.evaluate.stage import EvaluateStage
from pipeline.finetune.config import FinetuneConfig
from pipeline.finetune.stage import FinetuneStage
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.labeled.config import LabeledConfig, LabeledSourceConfig
from pipeline.labeled.stage import LabeledStage
from pipeline.observe import add_reporter
from pipeline.pretrain.config import GPTShape, PretrainConfig
from pipeline.pretrain.stage import PretrainStage
from pipeline.stage import run_stage
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.stage import TokenizeStage

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
_LABEL = re.compile(r"^\s*-?\w{1,12}\s*$")  # a short token: 0, 1, pos, negative ...


def sniff_layout(path: Path, probe: int = 50) -> LabeledSourceConfig:
    """CSV or TSV, which column is the label and whether line 1 is a header, from the first lines.

    The label column is the one whose values are short tokens drawn from a small set; line 1 is
    a header when its value in that column is not one of the labels seen below it.
    """
    suffix = path.suffix.lower()
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        first = f.readline()
        fmt = "csv" if suffix == ".csv" else "tsv" if suffix == ".tsv" or "\t" in first else "csv"
        f.seek(0)
        if fmt == "csv":
            lines = list(itertools.islice(csv.reader(f), probe + 1))
        else:
            lines = [ln.rstrip("\r\n").split("\t") for ln in itertools.islice(f, probe + 1)]
    body = [ln for ln in lines[1:] if len(ln) == 2]
    if not body or not lines or len(lines[0]) != 2:
        raise SystemExit(f"{path}: expected two {'comma' if fmt == 'csv' else 'tab'}-separated columns")
    scores = []
    for col in (0, 1):
        values = [ln[col].strip() for ln in body]
        scores.append((sum(bool(_LABEL.match(v)) for v in values), -len(set(values))))
    label_col = 0 if scores[0] > scores[1] else 1
    seen = {ln[label_col].strip() for ln in body}
    header = lines[0][label_col].strip() not in seen
    names = ["label", "text"] if label_col == 0 else ["text", "label"]
    return LabeledSourceConfig(
        path=str(path),
        format=fmt,
        header=header,
        columns=names,
        name=path.stem,
        quoting="csv" if fmt == "csv" else "none",
    )


def parse_budgets(text: str) -> list[int | str]:
    """``8,32,128,all`` -> [8, 32, 128, "all"]."""
    out: list[int | str] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            out.append("all")
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise SystemExit(f"--budgets: {part!r} is not a number of labels per class or 'all'")
    return out


def parse_settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings as a dict; a VALUE that parses as JSON is taken as JSON."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--ft expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def processes(workers: int):
    """A mapper running a stage's units in up to ``workers`` separate processes."""

    def mapper(phase: str, fn, units) -> list:
        if len(units) <= 1:
            return [fn(u) for u in units]
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(len(units), workers)) as pool:
            return list(pool.map(fn, units))

    return mapper


def print_pretrain_progress(event: str, data: dict) -> None:
    if event == "metrics" and data.get("stage") == "pretrain" and data.get("split") == "val":
        print(f"  pretrain step {data['step']}: val loss {data['val_loss']:.3f}", flush=True)


def pretrain(args: argparse.Namespace, root: Path, labeled: Dataset) -> Dataset:
    """Ingest, decontaminate, tokenize and pretrain on the offline corpus; the published pretrain dataset."""
    t0 = time.perf_counter()
    add_reporter(print_pretrain_progress)
    sources = [SourceConfig(path=str(p), text_mode="paragraphs") for p in args.corpus]
    if args.builtin:
        sources.append(SourceConfig(format="default"))
    ingest = run_stage(IngestStage(), IngestConfig(sources=sources), root, {})
    # Sentences are short: 8 words (GPT-3's smallest n) instead of 13; shorter ones are matched whole.
    clean = run_stage(
        DecontaminateStage(),
        DecontaminateConfig(labeled_n=8),
        root,
        {"filter": ingest.dataset, "labeled": labeled},
    )
    print(
        f"decontaminate: {clean.counts['rows_rejected']:,} of {clean.counts['rows_in']:,} docs rejected "
        f"{clean.stats['contaminated']}",
        flush=True,
    )
    tok = run_stage(
        TokenizeStage(),
        TokenizeConfig(vocab_size=args.vocab_size, seq_len=128),
        root,
        {"decontaminate": clean.dataset},
    )
    pcfg = PretrainConfig(
        gpt=GPTShape(n_layer=args.n_layer, n_head=4, n_embd=args.n_embd, dropout=args.dropout),
        batch_size=16,
        max_steps=args.pretrain_steps,
        eval_interval=max(min(500, args.pretrain_steps // 4), 1),
        eval_batches=10,
        checkpoint_interval=500,  # an interrupted run resumes with the same --root
        learning_rate=2e-3,
        min_lr=2e-4,
        device=args.device,
        deterministic=False,
        threads=args.threads,
    )
    pre = run_stage(PretrainStage(), pcfg, root, {"tokenize": tok.dataset}).dataset
    t_pre = time.perf_counter() - t0
    print(
        f"corpus: {clean.counts['rows_out']:,} docs, {tok.dataset.manifest['totals'].get('tokens_train', 0):,} train tokens; "
        f"pretrain {args.pretrain_steps} steps, {t_pre:.0f} s",
        flush=True,
    )
    return pre


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labeled", nargs="+", type=Path, default=sorted((CORPORA / "sentiment").glob("*.txt")))
    ap.add_argument(
        "--corpus",
        nargs="+",
        type=Path,
        default=[
            CORPORA / "web" / "cc_main_2019-30_sample.jsonl",
            CORPORA / "pretrain" / "tinyshakespeare.txt",
        ],
        help="Pretraining text files (.txt: one document per blank-line block)",
    )
    ap.add_argument(
        "--builtin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also pretrain on the built-in corpus (this Python's docstrings, READMEs, licences)",
    )
    ap.add_argument(
        "--budgets",
        type=parse_budgets,
        default=parse_budgets("8,32,128,all"),
        help="Labeled training examples per class, comma-separated; 'all' is the whole train split",
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pretrain-steps", type=int, default=6000)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.1, help="Pretraining dropout")
    ap.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary trained on the corpus")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for pretraining")
    ap.add_argument("--finetune-steps", type=int, default=None, help="Default: the finetune stage's")
    ap.add_argument("--adapt-steps", type=int, default=None, help="Default: the finetune stage's")
    ap.add_argument(
        "--ft",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Any other fine-tune setting, e.g. --ft patience=0 --ft lr=3e-4 (VALUE read as JSON when it parses)",
    )
    ap.add_argument(
        "--curve",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A label-efficiency setting (evaluate.curve), e.g. --curve max_steps=400 --curve epochs=10",
    )
    ap.add_argument(
        "--workers", type=int, default=2, help="Processes for the curve's units (one torch thread each)"
    )
    ap.add_argument(
        "--split-seed", type=int, default=0, help="Seed of the labeled train/validation/test split"
    )
    ap.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="A published pretrain dataset under --root to fine-tune from, instead of pretraining",
    )
    ap.add_argument("--root", type=Path, default=None, help="Data root (default: a temporary directory)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if not args.labeled or not all(p.is_file() for p in args.labeled + args.corpus):
        raise SystemExit(f"missing input files; the defaults live in {CORPORA}")
    root = args.root or Path(tempfile.mkdtemp(prefix="finetune_transfer-"))
    t0 = time.perf_counter()

    layouts = [sniff_layout(p) for p in args.labeled]
    lab = run_stage(LabeledStage(), LabeledConfig(sources=layouts, seed=args.split_seed), root, {})
    if args.pretrained:
        pre = Dataset(args.pretrained)  # an earlier run's model: iterate on fine-tuning alone
        print(f"pretrained: {pre.path} (val loss {pre.manifest['stats'].get('val_loss')})", flush=True)
    else:
        pre = pretrain(args, root, lab.dataset)

    # The published models: the stage's default recipe, one torch thread per model, side by side.
    budget = {} if args.finetune_steps is None else {"max_steps": args.finetune_steps}
    if args.adapt_steps is not None:
        budget["adapt_steps"] = args.adapt_steps
    budget.update(parse_settings(args.ft))
    fcfg = FinetuneConfig(**budget, device=args.device, threads=1)
    ft = run_stage(
        FinetuneStage(), fcfg, root, {"pretrain": pre, "labeled": lab.dataset}, mapper=processes(args.workers)
    )
    curve = CurveConfig(budgets=args.budgets, seeds=args.seeds, threads=1, **parse_settings(args.curve))
    ev = run_stage(
        EvaluateStage(),
        EvaluateConfig(samples=0, device=args.device, curve=curve),
        root,
        {"finetune": ft.dataset, "labeled": lab.dataset},
        mapper=processes(args.workers),
    )
    models = ev.stats["models"]
    print(
        f"published models (all {ft.stats['models']['finetuned']['train']} train labels, selected on validation "
        f"{fcfg.select_on}): test n={ev.stats['n']} "
        + " ".join(f"{k}={v['accuracy']:.4f}" for k, v in models.items()),
        flush=True,
    )
    c = ev.stats["curve"]
    keys: list[str] = []
    for r in sorted(c["budgets"], key=lambda r: r["per_class"] or 10**9):
        b = r["budget"]
        print(
            f"budget {b:>4} ({r['n_train']:>5} labels, {r['steps']} steps): fine-tuned {r['finetuned']['mean']:.4f} "
            f"+- {r['finetuned']['sd']:.4f}  scratch {r['scratch']['mean']:.4f} +- {r['scratch']['sd']:.4f}  "
            f"gain {r['gain']:+.4f} +- {r['gain_sd']:.4f} ({'holds' if r['holds'] else 'noise'})  "
            f"tfidf {r['tfidf']['mean']:.4f}",
            flush=True,
        )
        keys += [
            f"finetuned_acc_{b}={r['finetuned']['mean']:.4f}",
            f"scratch_acc_{b}={r['scratch']['mean']:.4f}",
            f"gain_{b}={r['gain']:.4f}",
            f"gain_sd_{b}={r['gain_sd']:.4f}",
            f"tfidf_acc_{b}={r['tfidf']['mean']:.4f}",
        ]
    full = next(
        (r for r in c["budgets"] if r["budget"] == "all"), max(c["budgets"], key=lambda r: r["n_train"])
    )
    print(c["headline"]["text"])
    print(f"root={root} seconds={time.perf_counter() - t0:.0f} curve_png={ev.path / c['png']}")
    keys += [
        f"finetuned_acc={full['finetuned']['mean']:.4f}",
        f"scratch_acc={full['scratch']['mean']:.4f}",
        f"majority_acc={c['majority']:.4f}",
        f"finetuned_sd={full['finetuned']['sd']:.4f}",
        f"scratch_sd={full['scratch']['sd']:.4f}",
        f"gain={full['gain']:.4f}",
        f"gain_sd={full['gain_sd']:.4f}",
        f"best_budget={c['headline']['budget']}",
        f"holds={int(c['headline']['holds'])}",
        f"seeds={args.seeds}",
    ]
    print(" ".join(keys))


if __name__ == "__main__":
    main()
