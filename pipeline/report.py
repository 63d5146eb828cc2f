"""The run report: one markdown file per end-to-end run, written under the data root.

``build_run_report(root, results)`` takes the published stage results of a run and writes
``<root>/reports/<run-id>.md`` with, in order: the headline (the label-efficiency curve:
pretrained + fine-tuned vs from scratch at each label budget, with the seed spread, TF-IDF and
the majority class; then the published fine-tuned model), every stage's counts, the
contamination found per evaluation set, the lineage from raw sources through datasets and
tokenizer to checkpoints (followed through the manifests' ``inputs``), the figures (linked
PNGs), and the evaluation tables. The run id hashes the result fingerprints, so the same run
writes the same file. The flows publish the same text as a Prefect markdown artifact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import storage
from .dataset import Dataset, is_published
from .decontaminate.summary import decontamination_section
from .evaluate.summary import curve_section
from .hashing import fingerprint
from .stage import StageResult

REPORTS = "reports"


def build_run_report(root: str | Path, results: list[StageResult]) -> Path:
    root = storage.local_path(root)  # a store URL: its local mirror
    run_id = fingerprint(results=[(r.stage, r.fingerprint) for r in results])[:12]
    path = root / REPORTS / f"{run_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(root, results, run_id, path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def render_report(root: Path, results: list[StageResult], run_id: str, where: Path) -> str:
    by_stage = {r.stage: r for r in results}
    out = [f"# tokenmill run `{run_id}`", ""]
    evaluate = by_stage.get("evaluate")
    if evaluate is not None:
        out += _headline(evaluate.stats, evaluate.path, where)
    out += [
        "## Stages",
        "",
        "| stage | version | cached | rows in | rows out | rejected | top reject reasons | seconds |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in results:
        c = r.counts
        reasons = sorted(c.get("rejected_by_reason", {}).items(), key=lambda kv: -kv[1])[:3]
        out.append(
            f"| {r.stage} | `{r.fingerprint[:12]}` | {'yes' if r.cached else 'no'} | {c.get('rows_in', 0):,} | "
            f"{c.get('rows_out', 0):,} | {c.get('rows_rejected', 0):,} | "
            f"{', '.join(f'{k} {v:,}' for k, v in reasons) or '-'} | {r.seconds:.1f} |"
        )
    decontaminate = by_stage.get("decontaminate")
    if decontaminate is not None and decontaminate.stats.get("eval_sets"):
        out += ["", "## Decontamination", ""] + decontamination_section(decontaminate.stats)
    out += [
        "",
        "## Lineage",
        "",
        "Raw sources -> datasets -> tokenizer -> checkpoints, from the manifests' inputs.",
        "",
    ]
    out += _lineage(root, results, where)
    figures = _figures(results, where)
    if figures:
        out += ["", "## Figures", ""] + figures
    for r in results:
        stats = _scalar_stats(r.dataset.manifest)
        if stats and r.stage not in ("evaluate",):
            out += ["", f"### {r.stage}: statistics", "", "| key | value |", "| --- | --- |"]
            out += [f"| {k} | {_fmt(v)} |" for k, v in stats]
    if evaluate is not None:
        out += ["", "## Evaluation", ""] + _evaluation(evaluate.stats)
    return "\n".join(out) + "\n"


# -- sections ----------------------------------------------------------------------------------------
def _headline(s: dict[str, Any], evaluate_path: Path, where: Path) -> list[str]:
    lines = ["## Headline: pretrained then fine-tuned vs trained from scratch", ""]
    curve = s.get("curve")
    if curve:
        png = evaluate_path / curve["png"]
        lines += curve_section(curve, _rel(png, where) if png.is_file() else None) + [""]
    h = s.get("headline", {})
    metric = h.get("metric", "accuracy")
    lines += [
        f"The published models (fine-tune stage, every train label, one seed), task {s.get('task')}, "
        f"on the {s.get('split')} split ({s.get('n')} examples):",
        "",
    ]
    lines += [f"| model | {metric} |", "| --- | ---: |"]
    names = {
        "finetuned": "pretrained + fine-tuned",
        "scratch": "same architecture, from scratch",
        "majority": "majority class",
    }
    for k, label in names.items():
        if k in h:
            lines.append(f"| {label} | {_fmt(h[k])} |")
    if "gain" in h:
        lines += [
            "",
            f"Difference: {_fmt(h['gain'])} ({metric}; one seed: "
            + ("the curve above gives its spread)." if curve else "no spread measured, no gain claimed)."),
        ]
    return lines + [""]


def _lineage(root: Path, results: list[StageResult], where: Path) -> list[str]:
    seen: dict[str, Dataset] = {}
    todo = [r.dataset for r in results]
    while todo:
        d = todo.pop()
        if str(d.path) in seen:
            continue
        seen[str(d.path)] = d
        for i in d.manifest.get("inputs", []):
            p = root / i["path"]
            if is_published(p):
                todo.append(Dataset(p))
    lines = []
    for d in sorted(seen.values(), key=lambda d: (_order(d.stage), d.fingerprint)):
        m = d.manifest
        ins = (
            ", ".join(f"{i['stage']} `{i['fingerprint'][:12]}`" for i in m.get("inputs", [])) or "raw sources"
        )
        lines.append(f"- **{d.stage}** `{d.fingerprint[:12]}` <- {ins}  ([data]({_rel(d.data_path, where)}))")
        for src in _raw_sources(m):
            lines.append(f"  - source: {src}")
        tok = m.get("totals", {}).get("tokenizer_fingerprint")
        if tok:
            lines.append(
                f"  - tokenizer `{str(tok)[:12]}` ([tokenizer]({_rel(d.path / 'tokenizer', where)}))"
            )
        for ck in ("checkpoint", "baseline", "hf"):
            if (d.path / ck).is_dir():
                lines.append(f"  - {ck}: [{ck}/]({_rel(d.path / ck, where)})")
    return lines


def _raw_sources(m: dict[str, Any]) -> list[str]:
    stats = m.get("stats", {})
    units = stats.get("units") or m.get("identity", {}).get("units") or []
    out = [u["key"] for u in units if isinstance(u, dict) and "key" in u]
    if len(out) > 8:
        out = out[:8] + [f"... and {len(out) - 8} more units"]
    if m.get("stage") == "labeled":
        out += [f"{k} ({v['rows_in']:,} rows)" for k, v in stats.get("by_source", {}).items()]
    return out


def _figures(results: list[StageResult], where: Path) -> list[str]:
    lines = []
    for r in results:
        for png in sorted(r.path.glob("*.png")):
            lines.append(f"![{r.stage}: {png.stem}]({_rel(png, where)})")
    return lines


def _evaluation(s: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    models = s.get("models", {})
    if s.get("task") == "classify":
        labels = s.get("labels", [])
        lines += ["| model | accuracy | macro-F1 |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {_fmt(v['accuracy'])} | {_fmt(v['macro_f1'])} |" for k, v in models.items()]
        lines += [
            "",
            "Per-class F1:",
            "",
            "| label | " + " | ".join(models) + " | support |",
            "| --- | " + " | ".join("---:" for _ in models) + " | ---: |",
        ]
        for i, lab in enumerate(labels):
            f1s = " | ".join(_fmt(models[k]["per_class"]["f1"][i]) for k in models)
            support = next(iter(models.values()))["per_class"]["support"][i] if models else 0
            lines.append(f"| {lab} | {f1s} | {support} |")
        ft = models.get("finetuned")
        if ft:
            lines += [
                "",
                "Confusion matrix of the fine-tuned model (rows: true, columns: predicted):",
                "",
                "| true \\ predicted | " + " | ".join(labels) + " |",
                "| --- |" + " ---: |" * len(labels),
            ]
            lines += [
                f"| {lab} | " + " | ".join(str(x) for x in row) + " |"
                for lab, row in zip(labels, ft["confusion"], strict=True)
            ]
    else:
        lines += ["| model | response perplexity |", "| --- | ---: |"]
        lines += [f"| {k} | {_fmt(v['response_perplexity'])} |" for k, v in models.items()]
        for k, v in models.items():
            for smp in v.get("samples", []):
                lines += [
                    "",
                    f"**{k}** - prompt: {_quote(smp['prompt'])}",
                    f"answer: {_quote(smp['answer'])}",
                    f"reference: {_quote(smp['reference'])}",
                ]
    pre = s.get("pretrained")
    if pre:
        lines += [
            "",
            (
                f"Pretrained language model on the {s.get('split')} texts: perplexity {_fmt(pre['perplexity'])} "
                f"over {pre['tokens']:,} tokens."
            ),
            "",
        ]
        for smp in pre.get("samples", []):
            lines.append(f"- {_quote(smp['prompt'])} -> {_quote(smp['continuation'])}")
    lines += _lm_eval(s.get("lm_eval"))
    return lines


def _lm_eval(lm: dict[str, Any] | None) -> list[str]:
    """lm-eval-harness scores: one row per model, task and metric, with its standard error."""
    if not lm:
        return []
    lines = [
        "",
        f"lm-eval-harness {lm.get('version', '')} on the exported transformers model:",
        "",
        "| model | task | examples | metric | value | stderr |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for model, tasks in lm.get("models", {}).items():
        for task, metrics in tasks.items():
            for metric, value in metrics.items():
                if metric.endswith("_stderr"):
                    continue
                err = metrics.get(f"{metric}_stderr")
                n = lm.get("samples", {}).get(task, "")
                lines.append(
                    f"| {model} | {task} | {n} | {metric} | {_fmt(value)} | {'-' if err is None else _fmt(err)} |"
                )
    return lines


# -- helpers ------------------------------------------------------------------------------------------
def _order(stage: str) -> int:
    from .stages import ORDER

    return ORDER.index(stage) if stage in ORDER else len(ORDER)


def _scalar_stats(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """Top-level numbers and short strings of a manifest's stats and totals (no tables)."""
    out = []
    for section in ("totals", "stats"):
        for k, v in sorted(m.get(section, {}).items()):
            if isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) < 80):
                out.append((k, v))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _quote(text: str, limit: int = 200) -> str:
    t = " ".join(str(text).split())
    return "`" + (t[:limit] + "..." if len(t) > limit else t).replace("`", "'") + "`"


def _rel(path: Path, where: Path) -> str:
    return Path(os.path.relpath(path, where)).as_posix()
