"""`tokenmill diff A B`: what changed between two versions of one stage.

Counts (rows in/out, rejects per reason) come from the manifests; which documents are kept by
one version and not the other comes from joining the two versions' ids in DuckDB (a hash anti
join that spills to disk past ``memory_limit``, never a Python set), with counts by source and
a few samples, each with the reason the other version rejected it. A version stands for its
whole incremental series (as the `tokenmill sql` views do). For tokenize versions: tokens in
total and per source (the ``docs`` view joined with the tokenize input for each document's
source), and the mixture's per-source tokens when the version mixes. For every stage: the
config keys that differ.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb

from .dataset import DATA_VIEW, REJECTS_VIEW, Dataset, is_published
from .errors import ConfigError

SNIPPET_CHARS = 160
DOC_VIEWS = (DATA_VIEW, "docs")  # where a stage keeps one row per document with its id


def _files(versions: list[Dataset], view: str) -> list[str]:
    return [str(p) for v in versions if view in v.manifest["views"] for p in v.shard_paths(view)]


def _read(files: list[str], columns: str) -> str:
    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"(SELECT {columns} FROM read_parquet([{quoted}], union_by_name = true))"


def doc_view(d: Dataset) -> str | None:
    """The view holding one row per document with its ``id`` (None for models and metrics)."""
    for view in DOC_VIEWS:
        if view in d.manifest["views"] and d.manifest["views"][view]["shards"]:
            if "id" in _schema_names(d, view):
                return view
    return None


def _schema_names(d: Dataset, view: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(d.shard_path(0, view)).names


def _sum_counts(chain: list[Dataset]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows_in": 0, "rows_out": 0, "rows_rejected": 0, "rejected_by_reason": {}}
    for v in chain:
        c = v.manifest.get("counts", {})
        for k in ("rows_in", "rows_out", "rows_rejected"):
            out[k] += c.get(k, 0) or 0
        for r, n in c.get("rejected_by_reason", {}).items():
            out["rejected_by_reason"][r] = out["rejected_by_reason"].get(r, 0) + n
    out["rejected_by_reason"] = dict(sorted(out["rejected_by_reason"].items()))
    return out


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys as `--set` takes them (list items by index)."""
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) and obj else None
    )
    if items is None:
        return {prefix[:-1]: obj}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}{k}."))
    return out


def config_changes(a: Dataset, b: Dataset) -> list[dict[str, Any]]:
    fa, fb = _flatten(a.manifest.get("config", {})), _flatten(b.manifest.get("config", {}))
    return [
        {"key": k, "a": fa.get(k), "b": fb.get(k)}
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k)
    ]


def _input_of(d: Dataset) -> Dataset | None:
    """The main input version a version was made from (its source column, for tokenize)."""
    inputs = d.manifest.get("inputs") or []
    if not inputs:
        return None
    p = d.root / inputs[0]["path"]
    return Dataset(p) if is_published(p) else None


def _documents_sql(d: Dataset, view: str) -> str:
    """id, source, text of every document of a version's series (tokenize: from its input)."""
    chain = d.chain()
    names = _schema_names(d, view)
    if "source" in names and "text" in names:
        return _read(_files(chain, view), "id, source, text")
    cols = "id, n_tokens" if "n_tokens" in names else "id, NULL::BIGINT AS n_tokens"
    docs = _read(_files(chain, view), cols)
    inputs = [i for v in chain if (i := _input_of(v)) is not None]
    if not inputs:
        return f"(SELECT id, NULL::VARCHAR AS source, NULL::VARCHAR AS text, n_tokens FROM {docs})"
    src = _read(_files([x for i in inputs for x in i.chain()], DATA_VIEW), "id, source, text")
    # An input id may repeat (ingest keeps exact copies): take one row per id.
    return (
        f"(SELECT d.id, s.source, s.text, d.n_tokens FROM {docs} d LEFT JOIN "
        f"(SELECT id, any_value(source) AS source, any_value(text) AS text FROM {src} GROUP BY id) s "
        "ON d.id = s.id)"
    )


def diff_versions(
    a: Dataset, b: Dataset, samples: int = 3, memory_limit: str = "1GB", temp_dir: str | Path | None = None
) -> dict[str, Any]:
    """The comparison of two versions of one stage, as plain JSON data."""
    if a.stage != b.stage:
        raise ConfigError(
            f"diff compares two versions of one stage: {a.fingerprint[:12]} is {a.stage}, "
            f"{b.fingerprint[:12]} is {b.stage}"
        )
    ca, cb = _sum_counts(a.chain()), _sum_counts(b.chain())
    reasons = sorted(set(ca["rejected_by_reason"]) | set(cb["rejected_by_reason"]))
    out: dict[str, Any] = {
        "stage": a.stage,
        "a": {"fingerprint": a.fingerprint, "path": str(a.path)},
        "b": {"fingerprint": b.fingerprint, "path": str(b.path)},
        "rows_in_a": ca["rows_in"],
        "rows_in_b": cb["rows_in"],
        "rows_out_a": ca["rows_out"],
        "rows_out_b": cb["rows_out"],
        "rows_rejected_a": ca["rows_rejected"],
        "rows_rejected_b": cb["rows_rejected"],
        "rejects_by_reason_a": ca["rejected_by_reason"],
        "rejects_by_reason_b": cb["rejected_by_reason"],
        "rejects": [
            {
                "reason": r,
                "a": ca["rejected_by_reason"].get(r, 0),
                "b": cb["rejected_by_reason"].get(r, 0),
                "delta": cb["rejected_by_reason"].get(r, 0) - ca["rejected_by_reason"].get(r, 0),
            }
            for r in reasons
        ],
        "config_changes": config_changes(a, b),
        "totals_a": a.manifest.get("totals", {}),
        "totals_b": b.manifest.get("totals", {}),
    }
    view_a, view_b = doc_view(a), doc_view(b)
    if view_a is None or view_b is None:
        return out
    with tempfile.TemporaryDirectory(dir=temp_dir) as tmp:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET temp_directory = '{tmp}'")
            con.execute("SET preserve_insertion_order = false")
            con.execute(f"CREATE VIEW a AS SELECT * FROM {_documents_sql(a, view_a)}")
            con.execute(f"CREATE VIEW b AS SELECT * FROM {_documents_sql(b, view_b)}")
            for name, d in (("a_rejects", a), ("b_rejects", b)):
                files = _files(d.chain(), REJECTS_VIEW)
                body = (
                    _read(files, "id, reason, value, threshold")
                    if files
                    else "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS reason, NULL::VARCHAR AS value, "
                    "NULL::VARCHAR AS threshold WHERE false)"
                )
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM {body}")
            out.update(_membership(con, samples))
            if a.stage == "tokenize":
                out["tokens"] = _tokens(con, a, b)
        finally:
            con.close()
    return out


def _membership(con: duckdb.DuckDBPyConnection, samples: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for side, other in (("a", "b"), ("b", "a")):
        only = f"(SELECT * FROM {side} ANTI JOIN {other} USING (id))"
        res[f"only_in_{side}"] = _count(con, f"SELECT count(*) FROM {only}")
        res[f"only_in_{side}_by_source"] = dict(
            con.execute(
                f"SELECT coalesce(source, '?'), count(*) FROM {only} GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
        )
        rows = con.execute(
            f"""SELECT o.id, o.source, left(o.text, {SNIPPET_CHARS}), r.reason, r.value, r.threshold
                FROM (SELECT * FROM {only} ORDER BY id LIMIT {int(samples)}) o
                LEFT JOIN (SELECT id, any_value(reason) AS reason, any_value(value) AS value,
                                  any_value(threshold) AS threshold
                           FROM {other}_rejects GROUP BY id) r ON o.id = r.id
                ORDER BY o.id"""
        ).fetchall()
        res[f"samples_only_in_{side}"] = [
            {
                "id": i,
                "source": s,
                "text": t,
                f"rejected_in_{other}": reason,
                "value": v,
                "threshold": th,
            }
            for i, s, t, reason, v, th in rows
        ]
    res["in_both"] = _count(con, "SELECT count(*) FROM (SELECT DISTINCT id FROM a) SEMI JOIN b USING (id)")
    res["text_changed"] = _count(
        con,
        "SELECT count(*) FROM (SELECT id, any_value(hash(text)) AS h FROM a GROUP BY id) x "
        "JOIN (SELECT id, any_value(hash(text)) AS h FROM b GROUP BY id) y USING (id) WHERE x.h IS DISTINCT FROM y.h",
    )
    return res


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _tokens(con: duckdb.DuckDBPyConnection, a: Dataset, b: Dataset) -> dict[str, Any]:
    """Tokens of the documents (docs view) in total and per source, and of the packed mixture."""
    by: dict[str, dict[str, Any]] = {}
    for side in ("a", "b"):
        for src, n in con.execute(
            f"SELECT coalesce(source, '?'), sum(n_tokens) FROM {side} GROUP BY 1 ORDER BY 1"
        ).fetchall():
            by.setdefault(src, {"source": src, "a": 0, "b": 0})[side] = int(n or 0)
    out: dict[str, Any] = {
        "total_a": sum(r["a"] for r in by.values()),
        "total_b": sum(r["b"] for r in by.values()),
        "by_source": sorted(by.values(), key=lambda r: -max(r["a"], r["b"])),
    }
    for side, d in (("a", a), ("b", b)):
        mix = d.manifest.get("stats", {}).get("mix")
        if mix:
            out[f"mixed_{side}"] = {s: m["tokens_after"] for s, m in mix["sources"].items()}
    return out


# -- markdown ---------------------------------------------------------------------------------------
def render_markdown(d: dict[str, Any]) -> str:
    a, b = d["a"]["fingerprint"][:12], d["b"]["fingerprint"][:12]
    lines = [f"# {d['stage']}: `{a}` (A) vs `{b}` (B)", ""]
    if d["config_changes"]:
        lines += ["| config | A | B |", "| --- | --- | --- |"]
        lines += [f"| `{c['key']}` | {_cell(c['a'])} | {_cell(c['b'])} |" for c in d["config_changes"]]
        lines.append("")
    lines += ["| count | A | B | B - A |", "| --- | ---: | ---: | ---: |"]
    for k in ("rows_in", "rows_out", "rows_rejected"):
        lines.append(f"| {k} | {d[k + '_a']:,} | {d[k + '_b']:,} | {d[k + '_b'] - d[k + '_a']:+,} |")
    for r in d["rejects"]:
        lines.append(f"| {r['reason']} | {r['a']:,} | {r['b']:,} | {r['delta']:+,} |")
    if "only_in_a" in d:
        lines += [
            "",
            f"Documents in both: {d['in_both']:,} ({d['text_changed']:,} with a different text); "
            f"only in A: **{d['only_in_a']:,}**; only in B: **{d['only_in_b']:,}**.",
        ]
        for side, other in (("a", "b"), ("b", "a")):
            if not d[f"only_in_{side}"]:
                continue
            by = ", ".join(f"{s} {n:,}" for s, n in d[f"only_in_{side}_by_source"].items())
            lines += ["", f"Only in {side.upper()}, by source: {by}", ""]
            for s in d[f"samples_only_in_{side}"]:
                why = s.get(f"rejected_in_{other}")
                why = (
                    f" ({other.upper()}: {why} value {s['value']} threshold {s['threshold']})" if why else ""
                )
                lines.append(f"- `{s['id'][:24]}` [{s['source']}]{why}: {_quote(s['text'])}")
    tok = d.get("tokens")
    if tok:
        lines += [
            "",
            f"Tokens: A {tok['total_a']:,}, B {tok['total_b']:,} ({tok['total_b'] - tok['total_a']:+,}).",
            "",
            "| source | tokens A | tokens B | B - A |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['source']} | {r['a']:,} | {r['b']:,} | {r['b'] - r['a']:+,} |" for r in tok["by_source"]
        ]
        for side in ("a", "b"):
            if f"mixed_{side}" in tok:
                mixed = ", ".join(f"{s} {n:,}" for s, n in tok[f"mixed_{side}"].items())
                lines.append(f"\nTraining tokens after mixing in {side.upper()}: {mixed}")
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    s = str(v)
    return s if len(s) < 60 else s[:59] + "…"


def _quote(text: str | None) -> str:
    t = " ".join(str(text or "").split())
    return "`" + t.replace("`", "'") + "`"
