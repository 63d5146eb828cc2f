"""Does pretraining help? Fine-tuned vs from-scratch vs majority class on labeled sentences.

Pretrains a small GPT through the real pipeline stages (ingest -> tokenize -> pretrain) on an
offline corpus, then, for each seed, builds the labeled dataset (a new seeded stratified split),
fine-tunes the pretrained model and trains the same architecture from scratch with the same
budget, and evaluates both on the test split next to the majority class. Prints mean and
standard deviation over seeds. Fine-tuning uses the fine-tune stage's default recipe (change it
with --finetune-steps, --adapt-steps or --ft KEY=VALUE, applied to both models); the two models
of a seed train side by side in two processes of one torch thread each.

The default pretraining corpus is everything offline that is prose: the Common Crawl sample in
../shared/corpora/web, tiny Shakespeare and the built-in corpus (this Python's docstrings,
READMEs and licences), 3.3M train tokens with a 4,096-token BPE; the model is a 4x128 GPT
(1.3M parameters, dropout 0.1) trained for 6,000 steps of 2,048 tokens (3.7 epochs).

    benchmarks/finetune_transfer.py [--labeled FILE ...] [--seeds 3] [--pretrain-steps N]
        [--corpus FILE ...] [--no-builtin] [--adapt-steps N] [--ft KEY=VALUE ...]
        [--root DIR [--pretrained DIR/datasets/pretrain/FINGERPRINT]]

Pretraining is most of the cost (54 minutes on one thread of a busy 2-core box). It checkpoints
every 500 steps, so an interrupted run resumes with the same ``--root``; ``--pretrained`` reuses
an earlier run's published pretrain dataset (under ``--root``) to iterate on fine-tuning alone.
benchmarks/transfer_probe.py measures what that checkpoint's frozen features know about the task.

Labeled files are tab-separated `text<TAB>label` or `label<TAB>text`, with or without a header;
the layout is detected from the first lines. Last line: `finetuned_acc=... scratch_acc=...
majority_acc=...` (means) with `*_sd=` spreads, `gain=` and `gain_sd=` (the spread of the
per-seed paired difference).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dataset import Dataset
from pipeline.evaluate.config import EvaluateConfig
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
    """Which column is the label and whether line 1 is a header, from the first lines.

    The label column is the one whose values are short tokens drawn from a small set; line 1 is
    a header when its value in that column is not one of the labels seen below it.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [ln.rstrip("\r\n").split("\t") for _, ln in zip(range(probe + 1), f, strict=False)]
    body = [ln for ln in lines[1:] if len(ln) == 2]
    if not body:
        raise SystemExit(f"{path}: expected two tab-separated columns")
    scores = []
    for col in (0, 1):
        values = [ln[col].strip() for ln in body]
        scores.append((sum(bool(_LABEL.match(v)) for v in values), -len(set(values))))
    label_col = 0 if scores[0] > scores[1] else 1
    seen = {ln[label_col].strip() for ln in body}
    header = lines[0][label_col].strip() not in seen
    names = ["label", "text"] if label_col == 0 else ["text", "label"]
    return LabeledSourceConfig(path=str(path), format="tsv", header=header, columns=names, name=path.stem)


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


def side_by_side(phase: str, fn, units) -> list:
    """A mapper running a stage's units in separate processes: fine-tuned and scratch train together."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(len(units), 1)) as pool:
        return list(pool.map(fn, units))


def print_pretrain_progress(event: str, data: dict) -> None:
    if event == "metrics" and data.get("stage") == "pretrain" and data.get("split") == "val":
        print(f"  pretrain step {data['step']}: val loss {data['val_loss']:.3f}", flush=True)


def pretrain(args: argparse.Namespace, root: Path) -> Dataset:
    """Ingest, tokenize and pretrain on the offline corpus; the published pretrain dataset."""
    t0 = time.perf_counter()
    add_reporter(print_pretrain_progress)
    sources = [SourceConfig(path=str(p), text_mode="paragraphs") for p in args.corpus]
    if args.builtin:
        sources.append(SourceConfig(format="default"))
    ingest = run_stage(IngestStage(), IngestConfig(sources=sources), root, {})
    tok = run_stage(
        TokenizeStage(),
        TokenizeConfig(vocab_size=args.vocab_size, seq_len=128),
        root,
        {"filter": ingest.dataset},
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
        f"corpus: {ingest.counts['rows_out']:,} docs, {tok.dataset.manifest['totals'].get('tokens_train', 0):,} train tokens; "
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

    if args.pretrained:
        pre = Dataset(args.pretrained)  # an earlier run's model: iterate on fine-tuning alone
        print(f"pretrained: {pre.path} (val loss {pre.manifest['stats'].get('val_loss')})", flush=True)
    else:
        pre = pretrain(args, root)

    layouts = [sniff_layout(p) for p in args.labeled]
    acc: dict[str, list[float]] = {"finetuned": [], "scratch": [], "majority": []}
    for seed in range(args.seeds):
        lab = run_stage(LabeledStage(), LabeledConfig(sources=layouts, seed=seed), root, {})
        # The stage's default recipe; one torch thread per model, the two models side by side.
        budget = {} if args.finetune_steps is None else {"max_steps": args.finetune_steps}
        if args.adapt_steps is not None:
            budget["adapt_steps"] = args.adapt_steps
        budget.update(parse_settings(args.ft))
        fcfg = FinetuneConfig(**budget, seed=seed, device=args.device, threads=1)
        ft = run_stage(
            FinetuneStage(),
            fcfg,
            root,
            {"pretrain": pre, "labeled": lab.dataset},
            mapper=side_by_side,
        )
        ev = run_stage(
            EvaluateStage(),
            EvaluateConfig(samples=0, device=args.device),
            root,
            {"finetune": ft.dataset, "labeled": lab.dataset},
        )
        models = ev.stats["models"]
        for k, values in acc.items():
            values.append(models[k]["accuracy"])
        steps = {k: v["best_step"] for k, v in ft.stats["models"].items()}
        print(
            f"seed {seed}: test n={ev.stats['n']} "
            + " ".join(f"{k}={v[-1]:.4f}" for k, v in acc.items())
            + f" best_steps={steps}",
            flush=True,
        )

    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    sd = {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in acc.items()}
    # Both models of a seed share its split, so the per-seed difference is the paired measure.
    gains = np.subtract(acc["finetuned"], acc["scratch"])
    gain_sd = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0
    print(f"root={root} seconds={time.perf_counter() - t0:.0f}")
    print(
        f"finetuned_acc={mean['finetuned']:.4f} scratch_acc={mean['scratch']:.4f} majority_acc={mean['majority']:.4f} "
        f"finetuned_sd={sd['finetuned']:.4f} scratch_sd={sd['scratch']:.4f} gain={mean['finetuned'] - mean['scratch']:.4f} "
        f"gain_sd={gain_sd:.4f} seeds={args.seeds}"
    )


if __name__ == "__main__":
    main()
