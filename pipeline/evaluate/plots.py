"""PNG figures for the run report: confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

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
