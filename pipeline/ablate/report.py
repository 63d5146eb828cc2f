"""The ablation's comparison: one row per run, a summary per variant, a table, a plot, files.

Written to ``<root>/reports/ablations/<id>/``: ``results.parquet`` (the rows; `tokenmill sql`
shows every ablation's rows as the ``ablations`` view), ``report.md``, ``comparison.png``,
``heldout.parquet`` (the held-out texts) and ``ablation.json`` (everything, as JSON).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import storage
from .plan import BASELINE

ABLATIONS = Path("reports") / "ablations"
RESULTS_FILE = "results.parquet"

METRICS = (
    # (row key, label, lower is better)
    ("heldout_bits_per_byte", "held-out bits/byte", True),
    ("heldout_word_perplexity", "held-out word ppl", True),
    ("finetuned_accuracy", "fine-tuned accuracy", False),
)

ROW_SCHEMA = pa.schema(
    [
        ("ablation", pa.string()),
        ("variant", pa.string()),
        ("seed", pa.int64()),
        ("overrides", pa.string()),
        ("first_stage", pa.string()),
        ("docs_train", pa.int64()),
        ("tokens_train", pa.int64()),
        ("heldout_docs", pa.int64()),
        ("heldout_bits_per_byte", pa.float64()),
        ("heldout_word_perplexity", pa.float64()),
        ("heldout_token_perplexity", pa.float64()),
        ("pretrain_val_loss", pa.float64()),
        ("finetuned_accuracy", pa.float64()),
        ("scratch_accuracy", pa.float64()),
        ("finetuned_macro_f1", pa.float64()),
        ("pretrained_test_perplexity", pa.float64()),
        ("tokenize", pa.string()),
        ("pretrain", pa.string()),
        ("evaluate", pa.string()),
    ]
)


def ablation_dir(root: str | Path, ablation_id: str) -> Path:
    return storage.local_path(root) / ABLATIONS / ablation_id


def run_row(
    ablation: str, run: Any, tokenize: Any, pretrain: Any, evaluate: Any | None, heldout: dict, held_docs: int
) -> dict[str, Any]:
    """One run's figures from its published datasets and its held-out score."""
    tt = tokenize.manifest.get("totals", {})
    ps = pretrain.manifest.get("stats", {})
    row: dict[str, Any] = {
        "ablation": ablation,
        "variant": run.variant,
        "seed": run.seed,
        "overrides": " ".join(run.overrides),
        "first_stage": run.first_stage,
        "docs_train": tt.get("docs_train"),
        "tokens_train": tt.get("tokens_train_mixed", tt.get("tokens_train")),
        "heldout_docs": held_docs,
        "heldout_bits_per_byte": heldout.get("bits_per_byte"),
        "heldout_word_perplexity": heldout.get("word_perplexity"),
        "heldout_token_perplexity": heldout.get("token_perplexity"),
        "pretrain_val_loss": ps.get("val_loss"),
        "tokenize": tokenize.fingerprint,
        "pretrain": pretrain.fingerprint,
        "evaluate": evaluate.fingerprint if evaluate is not None else None,
    }
    if evaluate is not None:
        es = evaluate.manifest.get("stats", {})
        models = es.get("models", {})
        ft, sc = models.get("finetuned", {}), models.get("scratch", {})
        row["finetuned_accuracy"] = ft.get("accuracy")
        row["scratch_accuracy"] = sc.get("accuracy")
        row["finetuned_macro_f1"] = ft.get("macro_f1")
        row["pretrained_test_perplexity"] = (es.get("pretrained") or {}).get("perplexity")
    return row


def _mean_sd(values: list[Any]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: mean and sd over seeds of each metric, and its paired difference from the baseline."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    base = {r["seed"]: r for r in rows if r["variant"] == BASELINE}
    out = []
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        s: dict[str, Any] = {
            "variant": v,
            "seeds": len(mine),
            "overrides": mine[0]["overrides"],
            "first_stage": mine[0]["first_stage"],
            "docs_train": mine[0]["docs_train"],
            "tokens_train": mine[0]["tokens_train"],
        }
        for key, _, lower in METRICS:
            s[key], s[key + "_sd"] = _mean_sd([r.get(key) for r in mine])
            if v == BASELINE:
                continue
            diffs = [
                r[key] - base[r["seed"]][key]
                for r in mine
                if r["seed"] in base and r.get(key) is not None and base[r["seed"]].get(key) is not None
            ]
            d, sd = _mean_sd(diffs)
            s[key + "_delta"], s[key + "_delta_sd"] = d, sd
            s[key + "_verdict"] = verdict(d, sd, len(diffs), lower)
        out.append(s)
    return out


def verdict(delta: float | None, sd: float | None, n: int, lower_is_better: bool) -> str:
    """Better or worse only when the paired difference is beyond two standard errors of the seeds."""
    if delta is None:
        return "n/a"
    if n < 2 or sd is None:
        return "one seed: no noise estimate"
    se = sd / math.sqrt(n)
    if abs(delta) <= 2 * se:
        return "within noise"
    better = delta < 0 if lower_is_better else delta > 0
    return "better" if better else "worse"


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(
    ablation_id: str,
    summary: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    held: dict[str, Any],
    diffs: dict[str, list[dict[str, Any]]],
    plot: str | None,
    plan_info: dict[str, Any],
) -> str:
    lines = [f"# Ablation `{ablation_id}`", ""]
    lines += [
        f"Runs through `{plan_info['until']}` with the proxy pretrain config "
        f"({plan_info['proxy']}); {plan_info['seeds']} pretrain seed(s) per variant. "
        f"Stages run once for every run: {', '.join(plan_info['shared_stages']) or 'none'}"
        + (
            f"; once per variant, shared by its seeds: {', '.join(plan_info['per_variant_stages'])}."
            if plan_info.get("per_variant_stages")
            else "."
        ),
        "",
        "| variant | overrides | from | train docs | train tokens | held-out bits/byte | Δ vs baseline | "
        "word ppl | fine-tuned acc | Δ vs baseline | verdict (bits/byte) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in summary:
        bpb = _fmt(s["heldout_bits_per_byte"]) + (
            f" ± {s['heldout_bits_per_byte_sd']:.4f}" if s.get("heldout_bits_per_byte_sd") else ""
        )
        acc = _fmt(s["finetuned_accuracy"]) + (
            f" ± {s['finetuned_accuracy_sd']:.4f}" if s.get("finetuned_accuracy_sd") else ""
        )
        d_bpb = s.get("heldout_bits_per_byte_delta")
        d_acc = s.get("finetuned_accuracy_delta")
        lines.append(
            f"| {s['variant']} | `{s['overrides'] or '(base config)'}` | {s['first_stage'] or '-'} | "
            f"{_fmt(s['docs_train'])} | {_fmt(s['tokens_train'])} | {bpb} | "
            f"{'-' if d_bpb is None else f'{d_bpb:+.4f}'} | {_fmt(s['heldout_word_perplexity'], 2)} | {acc} | "
            f"{'-' if d_acc is None else f'{d_acc:+.4f}'} | {s.get('heldout_bits_per_byte_verdict', '-')} |"
        )
    lines += [
        "",
        "Held-out set: "
        + f"{held.get('docs', 0):,} documents, {held.get('words', 0):,} words, {held.get('bytes', 0):,} bytes; "
        + f"{held.get('source')}; val documents seen {held.get('val_docs', '-')}, candidates {held.get('scanned')}; "
        + f"left out: not kept by every run {held.get('not_kept_by_every_run', 0)}, trained on by a run "
        + f"{held.get('trained_on_by_a_run', 0)}, shorter than {held['ngram']} words {held.get('shorter_than_ngram', 0)}, "
        + f"sharing a {held['ngram']}-gram with a training document {held.get('contaminated', 0)} "
        + f"({held.get('training_docs_checked', 0):,} training documents checked).",
        "",
        "Bits per byte and word perplexity are comparable across tokenizers; token perplexity "
        "(in `results.parquet`) only between runs with the same tokenizer.",
    ]
    if plot:
        lines += ["", f"![comparison]({plot})"]
    if diffs:
        lines += ["", "## What changed in the data", ""]
        for variant, ds in diffs.items():
            for d in ds:
                line = (
                    f"- **{variant}**, {d['stage']}: rows out {d['rows_out_a']:,} -> {d['rows_out_b']:,}; "
                    f"only in baseline {d.get('only_in_a', '-')}, only in {variant} {d.get('only_in_b', '-')}"
                )
                tok = d.get("tokens")
                if tok:
                    line += f"; tokens {tok['total_a']:,} -> {tok['total_b']:,}"
                lines.append(line)
    lines += [
        "",
        "## Runs",
        "",
        "| run | held-out bits/byte | word ppl | token ppl | pretrain val loss | fine-tuned acc | scratch acc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']}@{r['seed']} | {_fmt(r['heldout_bits_per_byte'])} | {_fmt(r['heldout_word_perplexity'], 2)} | "
            f"{_fmt(r['heldout_token_perplexity'], 2)} | {_fmt(r['pretrain_val_loss'])} | {_fmt(r.get('finetuned_accuracy'))} | "
            f"{_fmt(r.get('scratch_accuracy'))} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, label) for k, label, _ in METRICS if any(s.get(k) is not None for s in summary)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    names = [s["variant"] for s in summary]
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        # Points with error bars (seed sd), not bars: differences are small against the values.
        for x, s in enumerate(summary):
            runs = [r for r in rows if r["variant"] == s["variant"] and r.get(key) is not None]
            color = "#777777" if s["variant"] == BASELINE else "#3b75af"
            ax.scatter([x] * len(runs), [r[key] for r in runs], color=color, alpha=0.35, s=14)
            if s.get(key) is not None:
                ax.errorbar([x], [s[key]], yerr=[s.get(key + "_sd") or 0.0], fmt="o", color=color, capsize=5)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title(label + (" (lower is better)" if dict((k, lo) for k, _, lo in METRICS)[key] else ""))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(directory: Path, rows: list[dict[str, Any]], doc: dict[str, Any], text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{k: r.get(k) for k in ROW_SCHEMA.names} for r in rows], schema=ROW_SCHEMA)
    pq.write_table(table, directory / RESULTS_FILE, compression="zstd")
    (directory / "ablation.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp = directory / "report.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / "report.md")
    return directory / "report.md"
