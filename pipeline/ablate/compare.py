"""After the runs: the shared held-out set, every run's score on it, the data diffs, the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..dataset import Dataset
from ..diff import diff_versions
from ..stages import BY_NAME, ORDER
from . import heldout, report
from .plan import BASELINE, PROXY, AblationPlan

log = logging.getLogger("tokenmill")
DOC_STAGES_BEFORE = "tokenize"  # diffs are shown for the document stages up to and including tokenize


def compare(
    plan: AblationPlan,
    root: Path,
    datasets: dict[str, Dataset],
    heldout_texts: list[str] | None = None,
    max_docs: int = 400,
    ngram: int = 13,
) -> dict[str, Any]:
    """Score every run on one held-out set and write the comparison (see `pipeline.ablate.report`).

    ``datasets``: the published dataset of every instance, by instance key.
    """
    tok_input = BY_NAME["tokenize"].inputs[0]
    runs = plan.runs
    baseline = next(r for r in runs if r.variant == BASELINE)
    held = heldout.choose(
        datasets[baseline.instances[tok_input]],
        baseline.config.stage_config("tokenize").val_fraction,  # type: ignore[attr-defined]
        [datasets[r.instances[tok_input]] for r in runs],
        [(datasets[r.instances[tok_input]], datasets[r.instances["tokenize"]]) for r in runs],
        max_docs=max_docs,
        ngram=ngram,
        texts=heldout_texts,
    )
    if not held.texts:
        log.warning("ablation %s: the held-out set is empty (%s)", plan.id, held.stats)
    rows = []
    for r in runs:
        pretrain = datasets[r.instances["pretrain"]]
        scores = heldout.score(pretrain.path / "checkpoint", held) if held.texts else {}
        evaluate = datasets.get(r.instances.get("evaluate", ""))
        rows.append(
            report.run_row(
                plan.id, r, datasets[r.instances["tokenize"]], pretrain, evaluate, scores, len(held.texts)
            )
        )
    summary = report.summarize(rows)
    diffs = data_diffs(plan, datasets)
    out_dir = report.ablation_dir(root, plan.id)
    heldout.write(held, out_dir / "heldout.parquet")
    png = report.plot(summary, rows, out_dir / "comparison.png")
    info = {
        "until": plan.until,
        "seeds": len({r.seed for r in runs}),
        "proxy": ", ".join(f"{k}={v}" for k, v in PROXY.items()),
        # Run once for every run, and run once per variant for all its seeds (the data stages).
        "shared_stages": sorted(
            {i.stage for i in plan.shared() if len(i.runs) == len(runs)}, key=ORDER.index
        ),
        "per_variant_stages": sorted(
            {i.stage for i in plan.shared() if len(i.runs) < len(runs)}, key=ORDER.index
        ),
    }
    text = report.markdown(plan.id, summary, rows, held.stats, diffs, png.name if png else None, info)
    doc = {
        "id": plan.id,
        "runs": [
            {"name": r.name, "variant": r.variant, "seed": r.seed, "instances": r.instances} for r in runs
        ],
        "variants": [{"name": v.name, "overrides": list(v.overrides)} for v in plan.variants],
        "base_overrides": list(plan.base_overrides),
        "heldout": held.stats,
        "summary": summary,
        "rows": rows,
        "diffs": diffs,
        **info,
    }
    path = report.write(out_dir, rows, doc, text)
    return {
        "id": plan.id,
        "dir": str(out_dir),
        "report": str(path),
        "markdown": text,
        "summary": summary,
        "rows": rows,
        "heldout": held.stats,
        "plot": str(png) if png else None,
        "diffs": diffs,
    }


def data_diffs(plan: AblationPlan, datasets: dict[str, Dataset]) -> dict[str, list[dict[str, Any]]]:
    """Each variant against the baseline at every document stage its overrides change (first seed)."""
    first: dict[str, Any] = {}
    for r in plan.runs:
        first.setdefault(r.variant, r)
    base = first[BASELINE]
    doc_stages = [s for s in plan.stages if ORDER.index(s) <= ORDER.index(DOC_STAGES_BEFORE)]
    out: dict[str, list[dict[str, Any]]] = {}
    for name, r in first.items():
        if name == BASELINE:
            continue
        for s in doc_stages:
            if r.instances[s] == base.instances[s]:
                continue
            d = diff_versions(datasets[base.instances[s]], datasets[r.instances[s]], samples=2)
            out.setdefault(name, []).append(d)
    return out
