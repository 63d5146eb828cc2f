"""PNG figures for the run report: confusion matrices and label-efficiency curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

# Fixed metadata keeps the PNG bytes the same from run to run.
_META = {"Software": None}


def plot_confusion(cm: list[list[int]], labels: list[str], path: Path, title: str = "") -> Path:
    """A confusion matrix heat map, counts written in each cell (rows: true, columns: predicted)."""
    m = np.asarray(cm)
    size = max(3.5, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = m.max() if m.size else 0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > top / 2 else "black"
            )
    fig.tight_layout()
    fig.savefig(path, metadata=_META)
    plt.close(fig)
    return Path(path)


_CURVE_STYLE = {
    "finetuned": ("pretrained + fine-tuned", "C0", "o-"),
    "scratch": ("same architecture, from scratch", "C1", "s-"),
    "tfidf": ("TF-IDF + logistic regression", "C2", "^--"),
}


def plot_label_efficiency(curve: dict[str, Any], path: Path) -> Path:
    """Accuracy against labels per class (log scale): mean and sd over seeds of each model, the
    majority class as a floor; ``all`` sits at the train split's mean examples per class."""
    rows = curve["budgets"]
    xs = [r["per_class"] or r["n_train"] / max(1, curve["classes"]) for r in rows]
    order = np.argsort(xs)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    for model, (label, colour, style) in _CURVE_STYLE.items():
        pts = [(xs[i], rows[i][model]) for i in order if model in rows[i]]
        if not pts:
            continue
        x = [p[0] for p in pts]
        ax.errorbar(
            x,
            [p[1]["mean"] for p in pts],
            yerr=[p[1]["sd"] for p in pts],
            fmt=style,
            color=colour,
            capsize=4,
            label=label + " (mean ± sd)",
        )
    ax.axhline(curve["majority"], color="grey", linestyle=":", label="majority class")
    ax.set_xscale("log")
    ticks = [xs[i] for i in order]
    ax.set_xticks(
        ticks, [rows[i]["budget"] if rows[i]["per_class"] else f"all ({rows[i]['n_train']})" for i in order]
    )
    ax.minorticks_off()
    ax.set_xlabel("labeled training examples per class")
    ax.set_ylabel(f"{curve['metric']} ({curve.get('split', 'test')})")
    h = curve["headline"]
    verdict = "holds" if h.get("holds") else "inside the noise"
    ax.set_title(
        f"label efficiency: largest gain {h.get('gain', 0):+.3f} ± {h.get('gain_sd', 0):.3f} at {h.get('budget')} ({verdict})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata=_META)
    plt.close(fig)
    return Path(path)
