"""The loss curve as a PNG, and the markdown summary that links it (for a Prefect artifact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_loss_curve(
    metrics: list[dict[str, Any]], path: str | Path, unigram_entropy: float | None = None
) -> Path:
    """Train and validation loss against step, with the unigram baseline as a dashed line."""
    # Figure + Agg canvas rather than pyplot: no global backend or figure state in a library.
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for split, style in (("train", "-"), ("val", "o-")):
        rows = [m for m in metrics if m["split"] == split]
        if rows:
            ax.plot(
                [m["step"] for m in rows],
                [m["loss"] for m in rows],
                style,
                label=f"{split} loss",
                markersize=4,
            )
    if unigram_entropy is not None:
        ax.axhline(
            unigram_entropy, linestyle="--", color="grey", label=f"unigram entropy {unigram_entropy:.2f}"
        )
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("pretraining loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def markdown_summary(stats: dict[str, Any], loss_curve: str | None = None) -> str:
    """A short markdown report of a pretraining run; ``loss_curve`` is a link or path to the PNG."""

    def fmt(v: Any, spec: str = ".4f") -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [
        "# Pretraining",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | {stats.get('arch')} ({stats.get('params', 0):,} parameters) on {stats.get('device')} |",
        f"| steps / tokens | {stats.get('steps')} / {stats.get('tokens', 0):,} |",
        f"| train loss | {fmt(stats.get('train_loss'))} |",
        f"| val loss (perplexity) | {fmt(stats.get('val_loss'))} ({fmt(stats.get('val_perplexity'), '.1f')}) |",
        f"| unigram entropy of val | {fmt(stats.get('unigram_entropy'))} |",
        f"| tokens/s (median) | {fmt(stats.get('tokens_per_s'), ',.0f')} |",
        f"| MFU | {fmt(stats.get('mfu'), '.1%')} |",
    ]
    if loss_curve:
        lines += ["", f"![loss curve]({loss_curve})"]
    return "\n".join(lines) + "\n"
