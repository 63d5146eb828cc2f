"""Label-efficiency curves: what a pretrained start is worth at each number of labels.

For every budget (labels per class, or ``all``) and seed, a subset of the labeled train split is
drawn: within each class, rows ordered by a seeded hash of their id, the first ``budget`` taken
(so for one seed, a smaller budget's subset is part of a larger one's). On it are trained:

- ``finetuned``: the pretrained checkpoint with a classification head (the fine-tune recipe);
- ``scratch``: the same architecture from random weights, the same recipe, subset and seed;
- ``tfidf``: TF-IDF word 1-2-grams and a logistic regression (scikit-learn), the cheap
  non-neural reference.

The networks train for a fixed number of steps set by the budget (:func:`curve_steps`) and are
scored with their final weights: no validation label is used, so a budget of 8 means 8 labels
per class. Every model is scored on the same held-out split.

:func:`summarize` gives, per budget, each model's mean and sd over seeds and the paired gain
(finetuned minus scratch, same subset and seed) with its sd; the headline is the budget with the
largest mean gain, and the gain *holds* only when it exceeds the seed spread: larger than the sd
of the per-seed gains, positive on every seed, over at least two seeds. A gain that does not
hold is reported as inside the noise, never as a gain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xxhash

MODELS = ("finetuned", "scratch", "tfidf")


def budget_name(budget: int | str) -> str:
    return str(budget)


def subset(ids: list[str], labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Row indices of a budget's train subset: per class, the first ``per_class`` by seeded hash."""
    keys = np.array([xxhash.xxh3_64_intdigest(f"{seed}:{i}".encode()) for i in ids], dtype=np.uint64)
    out = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rows = rows[np.argsort(keys[rows], kind="stable")]
        out.append(rows if per_class is None else rows[:per_class])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def curve_steps(n_train: int, batch_size: int, epochs: float, min_steps: int, max_steps: int) -> int:
    """Optimizer steps for a budget: ``epochs`` passes over it, within [min_steps, max_steps]."""
    return int(min(max_steps, max(min_steps, math.ceil(epochs * n_train / batch_size))))


def tfidf_accuracy(
    train_texts: list[str], train_y: np.ndarray, test_texts: list[str], c: float
) -> np.ndarray:
    """Predictions of TF-IDF word 1-2-grams + logistic regression fitted on the train texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform(train_texts)
    if len(np.unique(train_y)) < 2:
        return np.full(len(test_texts), train_y[0] if len(train_y) else 0, dtype=np.int64)
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(x, train_y)
    return clf.predict(vec.transform(test_texts)).astype(np.int64)


def _stats(values: list[float]) -> dict[str, Any]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()) if a.size else float("nan"),
        "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "runs": [float(v) for v in a],
    }


def summarize(results: list[dict[str, Any]], majority: float, metric: str = "accuracy") -> dict[str, Any]:
    """Per budget: mean and sd of each model, the paired gain and its sd; the headline."""
    by_budget: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    order: list[str] = []
    for r in results:
        if r["budget"] not in by_budget:
            order.append(r["budget"])
        by_budget.setdefault(r["budget"], {}).setdefault(r["model"], {})[r["seed"]] = r
    rows = []
    for b in order:
        runs = by_budget[b]
        seeds = sorted(set(runs.get("finetuned", {})) & set(runs.get("scratch", {})))
        gains = [runs["finetuned"][s][metric] - runs["scratch"][s][metric] for s in seeds]
        gain = _stats(gains)
        first = next(iter(next(iter(runs.values())).values()))
        row: dict[str, Any] = {
            "budget": b,
            "per_class": first["per_class"],
            "n_train": first["n_train"],
            "steps": first.get("steps"),
            "seeds": len(seeds),
            "gain": gain["mean"],
            "gain_sd": gain["sd"],
            "gains": gain["runs"],
            "holds": holds(gains),
        }
        for m in MODELS:
            if m in runs:
                row[m] = _stats([runs[m][s][metric] for s in sorted(runs[m])])
        rows.append(row)
    return {"metric": metric, "majority": majority, "budgets": rows, "headline": headline(rows, metric)}


def holds(gains: list[float]) -> bool:
    """A gain is claimed only beyond the seed spread: mean > sd of the per-seed gains, every
    seed's gain positive, at least two seeds."""
    if len(gains) < 2:
        return False
    a = np.asarray(gains)
    return bool(a.mean() > a.std(ddof=1) and (a > 0).all())


def headline(rows: list[dict[str, Any]], metric: str = "accuracy") -> dict[str, Any]:
    """The budget with the largest mean paired gain, and whether that gain holds."""
    rows = [r for r in rows if r["seeds"]]
    if not rows:
        return {"text": "no label-efficiency runs"}
    best = max(rows, key=lambda r: r["gain"])
    ft, sc = best["finetuned"], best["scratch"]
    where = f"{best['per_class']} labels per class" if best["per_class"] else f"all {best['n_train']} labels"
    verdict = (
        "larger than the seed spread: pretraining helps here"
        if best["holds"]
        else "inside the seed spread: no gain is claimed"
    )
    if best["gain"] <= 0:
        verdict = "pretraining does not help at any budget"
    text = (
        f"Largest gain at {where}: pretrained + fine-tuned {ft['mean']:.3f} ± {ft['sd']:.3f} vs from scratch "
        f"{sc['mean']:.3f} ± {sc['sd']:.3f} ({metric}, {best['seeds']} seeds); paired gain "
        f"{best['gain']:+.3f} ± {best['gain_sd']:.3f}, {verdict}."
    )
    return {
        "metric": metric,
        "budget": best["budget"],
        "per_class": best["per_class"],
        "n_train": best["n_train"],
        "finetuned": ft["mean"],
        "scratch": sc["mean"],
        "gain": best["gain"],
        "gain_sd": best["gain_sd"],
        "seeds": best["seeds"],
        "holds": bool(best["holds"] and best["gain"] > 0),
        "text": text,
    }
