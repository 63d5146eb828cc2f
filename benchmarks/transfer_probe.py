"""What does a pretrained checkpoint know about a labeled task? Frozen-feature probes.

For each layer of a tokenmill GPT checkpoint (token embeddings, every block, the final norm),
the hidden states of each labeled text are mean-pooled and a logistic regression is fitted on
them (5-fold stratified cross-validation, the best of three regularisation strengths). The same
is done for the same architecture at random initialisation, and a TF-IDF word 1-2-gram logistic
regression on the raw texts is the lexical reference. Pretraining has put task-relevant
knowledge into a layer when its probe beats the random one; fine-tuning can only build on that.

    python benchmarks/transfer_probe.py CHECKPOINT_DIR [--labeled FILE ...] [--max-len 96]

CHECKPOINT_DIR is a pretrain dataset's ``checkpoint/`` (it holds the tokenizer). Labeled files
are read as by finetune_transfer.py (CSV or TSV, columns (label, sentence) or (sentence, label)).
Last line: ``pretrained_<layer>=`` and ``random_<layer>=`` accuracies, ``tfidf_lr=`` and ``n=``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_transfer import CORPORA, sniff_layout

from pipeline.labeled.readers import read_source_file
from pipeline.models import build_model
from pipeline.models.checkpoint import load_model, read_model_config
from pipeline.sources import Problem
from pipeline.tokenize.tokenizer import load_tokenizer


def read_labeled(paths: list[Path]) -> tuple[list[str], list[str]]:
    """Texts and labels through the labeled stage's reader; skipped records are counted aloud."""
    texts, labels, skipped = [], [], 0
    for path in paths:
        layout = sniff_layout(path)
        for _, rec in read_source_file(path, layout.format, layout, "text"):
            if isinstance(rec, Problem) or not str(rec.get("text") or "").strip() or rec.get("label") is None:
                skipped += 1
                continue
            texts.append(rec["text"])
            labels.append(str(rec["label"]).strip())
    if skipped:
        print(f"skipped {skipped} records without a text or a label", file=sys.stderr)
    return texts, labels


@torch.no_grad()
def layer_features(model: torch.nn.Module, batches: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Mean-pooled states per layer: the token embeddings, each block's output, the final norm."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [model.transformer.wte.register_forward_hook(lambda m, i, o: captured.__setitem__("emb", o))]
    for n, block in enumerate(model.transformer.h):
        hooks.append(block.register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(f"block{n}", o)))
    out: dict[str, list[np.ndarray]] = {}
    try:
        for ids in batches:
            captured["final"] = model.hidden_states(ids)
            for name, states in captured.items():
                out.setdefault(name, []).append(states[0].mean(0).numpy())
    finally:
        for h in hooks:
            h.remove()
    return {name: np.stack(rows) for name, rows in out.items()}


def best_cv_accuracy(make_model, x, y: np.ndarray, strengths: tuple[float, ...]) -> float:
    """5-fold stratified CV accuracy of ``make_model(C)``, the best over regularisation strengths."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return max(cross_val_score(make_model(c), x, y, cv=cv).mean() for c in strengths)


def probe(x: np.ndarray, y: np.ndarray) -> float:
    """Logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return best_cv_accuracy(
        lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)),
        x,
        y,
        (0.1, 1.0, 10.0),
    )


def tfidf_baseline(texts: list[str], y: np.ndarray) -> float:
    """The lexical reference: logistic regression on TF-IDF word 1-2-grams of the raw texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return best_cv_accuracy(
        lambda c: make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(C=c, max_iter=3000)),
        texts,
        y,
        (1.0, 10.0),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--labeled", nargs="+", type=Path, default=sorted((CORPORA / "sentiment").glob("*.txt")))
    ap.add_argument("--max-len", type=int, default=96, help="Tokens per text, end-of-text included")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the random-initialisation reference")
    args = ap.parse_args()
    if not args.labeled or not all(p.is_file() for p in args.labeled):
        raise SystemExit(f"missing labeled files; the defaults live in {CORPORA}")
    torch.set_num_threads(1)

    config = read_model_config(args.checkpoint)
    if config["arch"] != "gpt":
        raise SystemExit(f"{args.checkpoint}: layer probes need a GPT checkpoint, not {config['arch']}")
    model, _ = load_model(args.checkpoint)
    tok = load_tokenizer(args.checkpoint / "tokenizer")
    texts, labels = read_labeled(args.labeled)
    y = np.unique(labels, return_inverse=True)[1]
    limit = min(args.max_len, config["block_size"]) - 1
    batches = [torch.tensor([ids[:limit] + [tok.eot_id]]) for ids in tok.encode_batch(texts)]

    torch.manual_seed(args.seed)
    random_model = build_model("gpt", **{k: v for k, v in config.items() if k != "arch"}).eval()
    pre, rnd = layer_features(model, batches), layer_features(random_model, batches)
    scores = {}
    for name in pre:
        scores[f"pretrained_{name}"], scores[f"random_{name}"] = probe(pre[name], y), probe(rnd[name], y)
        print(
            f"{name:>7}: pretrained {scores[f'pretrained_{name}']:.4f}  random {scores[f'random_{name}']:.4f}"
        )
    scores["tfidf_lr"] = tfidf_baseline(texts, y)
    print(
        f"TF-IDF word 1-2-gram logistic regression: {scores['tfidf_lr']:.4f} ({len(texts)} texts, 5-fold CV)"
    )
    print(" ".join(f"{k}={v:.4f}" for k, v in scores.items()) + f" n={len(texts)}")


if __name__ == "__main__":
    main()
