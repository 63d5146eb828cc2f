"""The fine-tune stage's learning curves as a PNG (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

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
