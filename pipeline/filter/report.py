"""The bias and domain-mix audit: before and after filtering, per dataset and per source.

Each `filter` unit aggregates its batches with :func:`tally` (small dicts); :func:`merge` adds
them up; :func:`summarize` turns the sums into the audit: for every identity group, mentions per
million tokens, its share of its category (e.g. female / (male + female + nonbinary)), the share
of its mentions next to toxic or negative words, and ratios such as he/she, before and after,
overall and per source. :func:`write_report` saves it as ``bias.json`` plus ``bias.png`` (drawn with Pillow);
:func:`markdown` renders it for a Prefect artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BANDS = ("q1_lowest", "q2", "q3", "q4", "q5_highest")
RATIOS = {"he/she": ("pronoun/he", "pronoun/she"), "male/female": ("gender/male", "gender/female")}


def _group_sums(table: pa.Table, column: str) -> dict[tuple[str, str], int]:
    # As list<struct<key, value>>, whose flatten respects slices and filters (a map's .keys does not).
    entry = pa.struct([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.int32())])
    col = table.column(column).combine_chunks().cast(pa.list_(entry))
    pairs = pc.list_flatten(col)
    if len(pairs) == 0:
        return {}
    rows = pc.list_parent_indices(col)
    flat = pa.table(
        {"source": table.column("source").take(rows), "key": pairs.field("key"), "n": pairs.field("value")}
    )
    agg = flat.group_by(["source", "key"]).aggregate([("n", "sum")])
    return {
        (s, k): int(n) for s, k, n in zip(*(agg.column(c).to_pylist() for c in ("source", "key", "n_sum")))
    }


def tally(table: pa.Table, band_edges: list[float] | None = None) -> dict[str, Any]:
    """Per-source sums of one batch: docs, tokens, identity mentions, negative mentions, bands."""
    out: dict[str, Any] = {}
    sources = table.column("source").to_pylist()
    tokens = (
        table.column("token_count").to_numpy(zero_copy_only=False)
        if "token_count" in table.column_names
        else np.zeros(len(sources))
    )
    for s, t in zip(sources, tokens):
        e = out.setdefault(s, {"docs": 0, "tokens": 0, "mentions": {}, "negative": {}, "bands": {}})
        e["docs"] += 1
        e["tokens"] += int(t)
    if "bias_mentions" in table.column_names:
        for field, column in (("mentions", "bias_mentions"), ("negative", "bias_negative_mentions")):
            for (s, k), n in _group_sums(table, column).items():
                out[s][field][k] = out[s][field].get(k, 0) + n
    if band_edges is not None and "domain_score" in table.column_names:
        scores = table.column("domain_score").to_numpy(zero_copy_only=False)
        band = np.searchsorted(np.asarray(band_edges), scores, side="right")
        for s, b, v in zip(sources, band, scores):
            name = "none" if np.isnan(v) else BANDS[min(int(b), len(BANDS) - 1)]
            out[s]["bands"][name] = out[s]["bands"].get(name, 0) + 1
    return out


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for part in parts:
        for s, e in part.items():
            t = total.setdefault(s, {"docs": 0, "tokens": 0, "mentions": {}, "negative": {}, "bands": {}})
            t["docs"] += e["docs"]
            t["tokens"] += e["tokens"]
            for field in ("mentions", "negative", "bands"):
                for k, v in e[field].items():
                    t[field][k] = t[field].get(k, 0) + v
    return dict(sorted(total.items()))


def _describe(e: dict[str, Any]) -> dict[str, Any]:
    """Audit figures of one slice (a source, or everything)."""
    mentions, negative = e["mentions"], e["negative"]
    by_cat: dict[str, int] = {}
    for k, v in mentions.items():
        by_cat[k.split("/")[0]] = by_cat.get(k.split("/")[0], 0) + v
    groups = {}
    for k in sorted(mentions):
        n = mentions[k]
        groups[k] = {
            "mentions": n,
            "per_million_tokens": round(n / e["tokens"] * 1e6, 2) if e["tokens"] else None,
            "share_of_category": round(n / by_cat[k.split("/")[0]], 4),
            "negative_context_rate": round(negative.get(k, 0) / n, 4),
        }
    ratios = {
        name: (round(mentions.get(a, 0) / mentions[b], 3) if mentions.get(b) else None)
        for name, (a, b) in RATIOS.items()
    }
    return {
        "docs": e["docs"],
        "tokens": e["tokens"],
        "groups": groups,
        "ratios": ratios,
        "domain_bands": dict(sorted(e["bands"].items())),
    }


def summarize(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The audit: every figure before and after filtering, for the dataset and per source."""

    def total(parts: dict[str, Any]) -> dict[str, Any]:
        return merge([{"all": e} for e in parts.values()]).get(
            "all", {"docs": 0, "tokens": 0, "mentions": {}, "negative": {}, "bands": {}}
        )

    out = {"dataset": {"before": _describe(total(before)), "after": _describe(total(after))}, "by_source": {}}
    empty = {"docs": 0, "tokens": 0, "mentions": {}, "negative": {}, "bands": {}}
    for s in sorted(set(before) | set(after)):
        out["by_source"][s] = {
            "before": _describe(before.get(s, empty)),
            "after": _describe(after.get(s, empty)),
        }
    b, a = out["dataset"]["before"], out["dataset"]["after"]
    shifts = {}
    for k in sorted(set(b["groups"]) | set(a["groups"])):
        sb = b["groups"].get(k, {}).get("share_of_category", 0.0)
        sa = a["groups"].get(k, {}).get("share_of_category", 0.0)
        shifts[k] = round(sa - sb, 4)
    out["share_shift"] = shifts  # after - before: > 0 means filtering made the group more present
    return out


def stats_summary(audit: dict[str, Any]) -> dict[str, Any]:
    """The few audit figures worth a place in the manifest."""
    b, a = audit["dataset"]["before"], audit["dataset"]["after"]
    biggest = sorted(audit["share_shift"].items(), key=lambda kv: -abs(kv[1]))[:5]
    return {"ratios_before": b["ratios"], "ratios_after": a["ratios"], "largest_share_shifts": dict(biggest)}


def markdown(audit: dict[str, Any]) -> str:
    """The audit as a Markdown table (what the flows publish as a Prefect artifact)."""
    b, a = audit["dataset"]["before"], audit["dataset"]["after"]
    lines = [
        "## Bias audit: identity-term representation before and after filtering",
        "",
        f"Documents {b['docs']} → {a['docs']}; tokens {b['tokens']} → {a['tokens']}.",
        "",
        "| ratio | before | after |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {k} | {b['ratios'][k]} | {a['ratios'][k]} |" for k in RATIOS]
    lines += [
        "",
        "| group | per M tokens before | after | share of category before | after | negative context before | after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k in sorted(set(b["groups"]) | set(a["groups"])):
        gb, ga = b["groups"].get(k, {}), a["groups"].get(k, {})
        lines.append(
            f"| {k} | {gb.get('per_million_tokens', 0)} | {ga.get('per_million_tokens', 0)} | "
            f"{gb.get('share_of_category', 0)} | {ga.get('share_of_category', 0)} | "
            f"{gb.get('negative_context_rate', 0)} | {ga.get('negative_context_rate', 0)} |"
        )
    if b["domain_bands"]:
        lines += ["", "| domain score band | docs before | after |", "| --- | --- | --- |"]
        for band in sorted(set(b["domain_bands"]) | set(a["domain_bands"])):
            lines.append(f"| {band} | {b['domain_bands'].get(band, 0)} | {a['domain_bands'].get(band, 0)} |")
    return "\n".join(lines) + "\n"


def write_report(directory: Path, audit: dict[str, Any]) -> list[str]:
    """bias.json, bias.md and bias.png in ``directory``; returns the file names."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bias.json").write_text(json.dumps(audit, indent=2, sort_keys=True) + "\n")
    (directory / "bias.md").write_text(markdown(audit))
    plot(audit, directory / "bias.png")
    return ["bias.json", "bias.md", "bias.png"]


# The chart is drawn with Pillow: matplotlib's figure, layout and text rendering cost ~0.1 s, which
# would make this the dearest fixed cost of any data stage on a small input.
_BEFORE, _AFTER, _INK, _GRID = (31, 119, 180), (255, 127, 14), (30, 30, 30), (225, 225, 225)


def plot(audit: dict[str, Any], path: Path) -> None:
    """Share of its category per identity group, before vs after filtering (horizontal bars, PNG)."""
    from PIL import Image, ImageDraw, ImageFont

    b, a = audit["dataset"]["before"]["groups"], audit["dataset"]["after"]["groups"]
    keys = sorted(set(b) | set(a)) or ["(no identity terms found)"]
    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=11)
    row, top, label_w, bar_w = 24, 56, max(int(small.getlength(k)) for k in keys) + 16, 560
    width, height = label_w + bar_w + 30, top + row * len(keys) + 48
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((width // 2, 10), "Identity-term representation before and after filtering", _INK, font, "ma")
    for n, (name, color) in enumerate((("before", _BEFORE), ("after", _AFTER))):
        x = label_w + n * 90
        draw.rectangle((x, 34, x + 12, 44), color)
        draw.text((x + 16, 33), name, _INK, small)
    x0, y_end = label_w, top + row * len(keys)
    for tick in range(6):  # shares run from 0 to 1
        x = x0 + bar_w * tick // 5
        draw.line((x, top - 4, x, y_end), _GRID)
        draw.text((x, y_end + 4), f"{tick / 5:.1f}", _INK, small, "ma")
    draw.text((x0 + bar_w // 2, y_end + 22), "share of mentions within its category", _INK, small, "ma")
    for i, k in enumerate(keys):
        y = top + row * i
        draw.text((label_w - 8, y + row // 2), k, _INK, small, "rm")
        for n, (side, color) in enumerate(((b, _BEFORE), (a, _AFTER))):
            share = min(1.0, max(0.0, float(side.get(k, {}).get("share_of_category", 0))))
            draw.rectangle((x0, y + 3 + 9 * n, x0 + round(bar_w * share), y + 11 + 9 * n), color)
    draw.line((x0, top - 4, x0, y_end), _INK)
    # No timestamp or software chunk, so the bytes are identical run to run; light compression
    # because level 6 costs ~20 ms on a mostly white image for a few KB.
    img.save(path, format="PNG", compress_level=1)
