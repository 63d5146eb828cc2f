"""PNG figures for the run report: learning curves and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

# Fixed metadata keeps the PNG bytes the same from run to run.
_META = {"Software": None}


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Train and validation loss against step, one colour per model; None when nothing to plot."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for i, model in enumerate(sorted({r["model"] for r in rows})):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["step"])
        steps = [r["step"] for r in mine]
        colour = f"C{i}"
        ax.plot(steps, [r["train_loss"] for r in mine], "--", color=colour, label=f"{model} train")
        ax.plot(steps, [r["val_loss"] for r in mine], "-", color=colour, label=f"{model} validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata=_META)
    plt.close(fig)
    return Path(path)


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
