"""The dedup stage's manifest stats, and a markdown summary of them for a Prefect artifact."""

from __future__ import annotations

from typing import Any

from .clusters import size_histogram
from .config import DedupConfig
from .lsh import curve, match_probability


def _merge_histograms(hists: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in hists:
        for k, v in h.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items(), key=lambda kv: int(kv[0].split("-")[0])))


def _rate(n: int, d: int) -> float:
    return round(n / d, 6) if d else 0.0


def build_stats(
    cfg: DedupConfig,
    counts: dict[str, Any],
    results: list[dict[str, Any]],
    extra: dict[str, Any],
    generation: int,
) -> dict[str, Any]:
    rows_in = counts["rows_in"]
    by_source: dict[str, dict[str, Any]] = {}
    for r in results:
        for src, c in r["by_source"].items():
            s = by_source.setdefault(src, {})
            for k, v in c.items():
                s[k] = s.get(k, 0) + v
    for s in by_source.values():
        s["duplicate_rate"] = _rate(s["rows_in"] - s["rows_out"], s["rows_in"])
    bands, rows = cfg.band_shape()
    cluster = extra.get("cluster", {})
    near = cluster.get("near", {})
    exact = extra.get("exact", [])
    spans = {
        "enabled": cfg.spans.enabled,
        "unit": cfg.spans.unit,
        "frequent_spans": cluster.get("frequent_spans", 0),
    }
    for key in ("spans_removed", "chars_removed", "docs_changed"):
        spans[key] = sum(r["spans"][key] for r in results)
    return {
        "generation": generation,
        "duplicate_rate": _rate(counts["rows_rejected"], rows_in),
        "by_rule": {
            reason: {"docs": n, "rate": _rate(n, rows_in)}
            for reason, n in counts["rejected_by_reason"].items()
        },
        "by_source": dict(sorted(by_source.items())),
        "exact": {
            "groups": sum(e["groups"] for e in exact),
            "group_size_histogram": _merge_histograms([e["histogram"] for e in exact]),
        },
        "near": {
            "docs_without_shingles": extra.get("signatures", {}).get("no_shingles", 0),
            "candidate_pairs": extra.get("buckets", {}).get("pairs", 0),
            "distinct_pairs": extra.get("verify", {}).get("candidates", 0),
            "verified_pairs": extra.get("verify", {}).get("verified", 0),
            "clusters": near.get("clusters", 0),
            "removed": near.get("removed", 0),
            "cluster_size_histogram": near.get("cluster_size_histogram", {}),
            "largest_clusters": near.get("largest_clusters", []),
        },
        "lsh": {
            "shingle": f"{cfg.shingle} {cfg.ngram}-gram",
            "num_perm": cfg.num_perm,
            "bands": bands,
            "rows": rows,
            "threshold": cfg.threshold,
            "verify": cfg.verify,
            "p_match_at_threshold": round(float(match_probability(cfg.threshold, bands, rows)), 6),
            "curve": curve(bands, rows),
        },
        "spans": spans,
    }


def summary_markdown(stats: dict[str, Any]) -> str:
    """A human summary of a dedup run's stats (the manifest's ``stats``), as markdown."""
    lsh, near, exact = stats["lsh"], stats["near"], stats["exact"]
    lines = [
        "# Dedup summary",
        "",
        f"Duplicate rate: **{stats['duplicate_rate']:.2%}** (generation {stats['generation']}).",
        (
            f"MinHash {lsh['num_perm']} permutations over {lsh['shingle']} shingles, LSH {lsh['bands']} bands x "
            f"{lsh['rows']} rows, threshold {lsh['threshold']} (match probability there "
            f"{lsh['p_match_at_threshold']:.3f}), verification: {lsh['verify']}."
        ),
        "",
        "## By rule",
        "",
        "| rule | documents | rate |",
        "| --- | ---: | ---: |",
        *[f"| {r} | {v['docs']} | {v['rate']:.2%} |" for r, v in stats["by_rule"].items()],
        "",
        "## By source",
        "",
        "| source | in | out | duplicate rate |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {s} | {v['rows_in']} | {v['rows_out']} | {v['duplicate_rate']:.2%} |"
            for s, v in stats["by_source"].items()
        ],
        "",
        "## Clusters",
        "",
        (
            f"Exact groups: {exact['groups']}; near-duplicate clusters: {near['clusters']} "
            f"({near['distinct_pairs']} candidate pairs, {near['verified_pairs']} verified)."
        ),
        "",
        "| size | exact groups | near clusters |",
        "| --- | ---: | ---: |",
    ]
    sizes = sorted(
        set(exact["group_size_histogram"]) | set(near["cluster_size_histogram"]),
        key=lambda k: int(k.split("-")[0]),
    )
    for k in sizes:
        lines.append(
            f"| {k} | {exact['group_size_histogram'].get(k, 0)} | {near['cluster_size_histogram'].get(k, 0)} |"
        )
    if near["largest_clusters"]:
        lines += ["", "## Largest near-duplicate clusters", ""]
        for c in near["largest_clusters"]:
            lines.append(f"- cluster {c['cluster']} ({c['size']} documents):")
            for m in c["members"]:
                snippet = m["snippet"][:100].replace("|", "\\|")
                lines.append(f"  - `{m['id']}`: {snippet}")
    sp = stats["spans"]
    if sp["enabled"]:
        lines += [
            "",
            (
                f"Repeated {sp['unit']}s: {sp['frequent_spans']} frequent spans; {sp['spans_removed']} removed from "
                f"{sp['docs_changed']} documents ({sp['chars_removed']} characters)."
            ),
        ]
    lines += ["", "## LSH match probability", "", "| Jaccard | P(match) |", "| ---: | ---: |"]
    lines += [
        f"| {p['jaccard']:.2f} | {p['p_match']:.3f} |"
        for p in lsh["curve"]
        if round(p["jaccard"] * 20) % 2 == 0
    ]
    return "\n".join(lines) + "\n"


__all__ = ["build_stats", "size_histogram", "summary_markdown"]
