"""Markdown for the label-efficiency curve: the run report's headline and the evaluate artifact."""

from __future__ import annotations

from typing import Any


def curve_section(curve: dict[str, Any], png: str | None) -> list[str]:
    """The label-efficiency headline, its table (mean ± sd over seeds) and the figure."""
    h = curve["headline"]
    lines = [f"**{h['text']}**", ""]
    lines += [
        "| labels per class | train examples | pretrained + fine-tuned | from scratch | paired gain | "
        "beyond the seed spread | TF-IDF + logistic regression |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in curve["budgets"]:
        cells = [
            _pm(r.get("finetuned")),
            _pm(r.get("scratch")),
            f"{r['gain']:+.4f} ± {r['gain_sd']:.4f}",
            "yes" if r["holds"] else "no",
            _pm(r.get("tfidf")),
        ]
        lines.append(f"| {r['budget']} | {r['n_train']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{curve['metric'].capitalize()} on the {curve.get('split', 'test')} split, mean ± sd over "
        f"{max((r['seeds'] for r in curve['budgets']), default=0)} seeds (each seed draws its own subset and "
        f"initialisation; both networks share it); majority class {curve['majority']:.4f}. A gain counts only "
        "when it is larger than the sd of the per-seed paired gains and positive on every seed.",
    ]
    if png:
        lines += ["", f"![label efficiency]({png})"]
    return lines


def _pm(st: dict[str, Any] | None) -> str:
    return f"{st['mean']:.4f} ± {st['sd']:.4f}" if st else "-"
