"""Source mixing: the training stream with per-source token weights or budgets (dolma's mixer, OLMo).

Mixing happens inside tokenize, where every document's real token count is known, so shares
are exact in the tokens the model trains on; it reads whatever stage precedes tokenize, so it
composes with any stage placed before it. Only the train split is mixed: the val split keeps
the input's natural proportions, and a document's split never changes (it is decided by its id).

For each source ``s`` with ``T_s`` train tokens and target ``t_s`` (``weights[s]`` times the
total, or ``budgets[s]``; capped at ``max_epochs * T_s``), the mixture holds ``k = floor(t_s /
T_s)`` whole epochs of the source plus a partial epoch: its documents in the order of a seeded
hash of their id, taken while that brings the source closest to ``t_s`` (a downsample by hash
when ``t_s < T_s``). The partial epoch is exact to within half a document, so output shares
match the weights wherever the sources hold enough tokens; where one does not, a warning says
by how much. Each pass over the data is written as its own stream, so a document's copies lie
a whole epoch apart before the global shuffle.

Phases: encode records (source, hash, tokens) of every train document in stream order (one
small Parquet file per input shard); the plan (one DuckDB query) finds each source's cutoff; one
unit per input shard then writes the mixed stream of each pass.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..dataset import Dataset
from ..errors import ConfigError
from .formats import SCRATCH_DIR, stream_file, unit_hash

log = logging.getLogger("tokenmill")
SHARE_TOLERANCE = 0.01  # relative: a source's output share within 1% of its requested weight

INDEX_SCHEMA = pa.schema([("source", pa.string()), ("h", pa.uint64()), ("n", pa.int64())])


class MixConfig(BaseModel):
    """Per-source weights (shares of the training tokens) or token budgets; one of the two."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] | None = Field(
        None,
        description="source -> share of the training tokens (normalised when they do not sum to 1); "
        "sources not named are left out",
    )
    budgets: dict[str, int] | None = Field(
        None, description="source -> training tokens; sources not named keep all their tokens once"
    )
    total_tokens: int | None = Field(
        None, ge=1, description="With weights: the mixture's training tokens; default: the train split's"
    )
    max_epochs: float = Field(
        4.0, ge=1.0, description="Upsampling cap: no source repeats more than this many times"
    )
    seed: int = Field(0, ge=0, description="Seed of the hash that orders each source's documents")

    @model_validator(mode="after")
    def _one_of(self) -> MixConfig:
        if (self.weights is None) == (self.budgets is None):
            raise ValueError("mix needs exactly one of weights or budgets")
        if self.weights is not None:
            if any(w < 0 or not math.isfinite(w) for w in self.weights.values()):
                raise ValueError("mix.weights must be finite and >= 0")
            if not any(w > 0 for w in self.weights.values()):
                raise ValueError("mix.weights: at least one weight must be above 0")
        if self.budgets is not None and any(b < 0 for b in self.budgets.values()):
            raise ValueError("mix.budgets must be >= 0")
        if self.total_tokens is not None and self.weights is None:
            raise ValueError("mix.total_tokens goes with weights (budgets are totals already)")
        return self


# -- encode: the index of train documents ---------------------------------------------------------
def index_file(staging_dir: Path, shard: int) -> Path:
    return staging_dir / SCRATCH_DIR / f"mix-index-{shard:05d}.parquet"


def mixed_stream_file(staging_dir: Path, epoch: int, shard: int) -> Path:
    return staging_dir / SCRATCH_DIR / f"stream-train-mix{epoch:03d}-{shard:05d}.bin"


class IndexWriter:
    """Collects (source, hash, tokens) of one input shard's train documents, in stream order."""

    def __init__(self, path: Path, seed: int):
        self.path = path
        self.seed = seed
        self.parts: list[pa.Table] = []

    def add(self, sources: list[str | None], ids: list[str], lengths: np.ndarray, train: np.ndarray) -> None:
        keep = np.flatnonzero(train)
        if not len(keep):
            return
        self.parts.append(
            pa.table(
                {
                    "source": pa.array([sources[i] or "" for i in keep], pa.string()),
                    "h": pa.array(unit_hash([ids[i] for i in keep], self.seed)),
                    "n": pa.array(lengths[keep].astype(np.int64)),
                },
                schema=INDEX_SCHEMA,
            )
        )

    def close(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.concat_tables(self.parts) if self.parts else INDEX_SCHEMA.empty_table()
        pq.write_table(table, self.path)


def known_sources(dataset: Dataset) -> dict[str, int]:
    """Documents per source in the input (all splits): what weights may name."""
    files = [str(p) for p in dataset.shard_paths()]
    if not files:
        return {}
    rows = duckdb.connect().execute(
        "SELECT coalesce(source, ''), count(*) FROM read_parquet($f) GROUP BY 1 ORDER BY 1", {"f": files}
    )
    return dict(rows.fetchall())


def check_sources(cfg: MixConfig, known: dict[str, int]) -> None:
    named = (cfg.weights or cfg.budgets or {}).keys()
    unknown = sorted(s for s in named if s not in known)
    if unknown:
        raise ConfigError(
            f"tokenize.mix names source(s) {', '.join(map(repr, unknown))} that the input does not hold; "
            f"its sources are {', '.join(repr(s) for s in known) or 'none'}"
        )


# -- plan --------------------------------------------------------------------------------------
def plan_mixture(cfg: MixConfig, index_files: list[Path]) -> dict[str, Any]:
    """Per source: tokens before, target, whole epochs and the hash cutoff of the partial epoch."""
    files = [str(p) for p in index_files]
    con = duckdb.connect()
    before = dict(
        con.execute("SELECT source, sum(n) FROM read_parquet($f) GROUP BY 1", {"f": files}).fetchall()
        if files
        else []
    )
    before = {s: int(n) for s, n in before.items()}
    notes: list[str] = []
    warnings: list[str] = []
    named: dict[str, float] = {s: float(v) for s, v in (cfg.weights or cfg.budgets or {}).items()}
    for s in sorted(before):
        if s not in named:
            if cfg.weights is not None:
                notes.append(f"source {s!r} is not in mix.weights: its {before[s]:,} tokens are left out")
            named[s] = before[s] if cfg.budgets is not None else 0.0
    total_before = sum(before.values())
    if cfg.weights is not None:
        wsum = sum(named.values())
        if abs(wsum - 1.0) > 1e-9:
            notes.append(
                f"mix.weights sum to {wsum:g}, not 1: normalised to "
                + ", ".join(f"{s} {w / wsum:.4g}" for s, w in sorted(named.items()) if w > 0)
            )
        requested = {s: w / wsum for s, w in named.items()}
        total: float = cfg.total_tokens or total_before
        targets = {s: requested[s] * total for s in named}
    else:
        targets = {s: float(b) for s, b in named.items()}
        total = sum(targets.values())
        requested = {s: (t / total if total else 0.0) for s, t in targets.items()}
    plan: dict[str, Any] = {}
    for s in sorted(named):
        have = before.get(s, 0)
        want = targets[s]
        cap = have * cfg.max_epochs
        capped = min(want, cap)
        epochs = int(capped // have) if have else 0
        rest = capped - epochs * have
        plan[s] = {"tokens_before": have, "target": want, "whole_epochs": epochs, "rest": rest}
    cutoffs = _cutoffs(con, files, {s: p["rest"] for s, p in plan.items() if p["rest"] > 0})
    for s, p in plan.items():
        p["cutoff"], p["fill"], partial = cutoffs.get(s, (None, [], 0))
        p["tokens_after"] = p["whole_epochs"] * p["tokens_before"] + partial
    total_after = sum(p["tokens_after"] for p in plan.values())
    sources = {}
    for s, p in plan.items():
        share = p["tokens_after"] / total_after if total_after else 0.0
        sources[s] = {
            "requested_share": round(requested[s], 6),
            "target_tokens": round(p["target"]),
            "tokens_before": p["tokens_before"],
            "tokens_after": p["tokens_after"],
            "share": round(share, 6),
            "epochs": round(p["tokens_after"] / p["tokens_before"], 4) if p["tokens_before"] else 0.0,
            "whole_epochs": p["whole_epochs"],
            "cutoff": p["cutoff"],
            "fill": p["fill"],
        }
        short = p["target"] - p["tokens_after"]
        have = p["tokens_before"]
        if p["target"] > have * cfg.max_epochs:
            warnings.append(
                f"source {s!r} has {have:,} training tokens; {p['target']:,.0f} were requested "
                f"(share {requested[s]:.4f}), and max_epochs {cfg.max_epochs:g} allows {have * cfg.max_epochs:,.0f}: "
                f"short by {short:,.0f} tokens ({short / p['target']:.1%}); its share is {share:.4f}"
            )
        elif p["target"] > 0 and abs(short) > p["target"] * SHARE_TOLERANCE:
            warnings.append(
                f"source {s!r}: its documents are too large to come within 1% of its target: "
                f"{p['tokens_after']:,} tokens for {p['target']:,.0f} requested ({-short / p['target']:+.1%})"
            )
    if warnings and cfg.weights is not None:
        off = {s: v["share"] - v["requested_share"] for s, v in sources.items() if v["requested_share"] > 0}
        warnings.append(
            "so shares differ from the weights: "
            + ", ".join(f"{s} {d:+.4f}" for s, d in sorted(off.items()) if abs(d) > 1e-4)
        )
    for line in notes + warnings:
        log.warning("tokenize.mix: %s", line)
    return {
        "mode": "weights" if cfg.weights is not None else "budgets",
        "seed": cfg.seed,
        "max_epochs": cfg.max_epochs,
        "total_tokens_requested": round(total),
        "tokens_before": total_before,
        "tokens_after": total_after,
        "passes": max(
            (p["whole_epochs"] + (p["cutoff"] is not None or bool(p["fill"])) for p in plan.values()),
            default=0,
        ),
        "sources": sources,
        "notes": notes,
        "warnings": warnings,
    }


def _cutoffs(
    con: duckdb.DuckDBPyConnection, files: list[str], rest: dict[str, float]
) -> dict[str, tuple[int | None, list[int], int]]:
    """Per source, the partial epoch: (largest hash of its prefix, hashes filled in, tokens).

    The prefix is the source's documents in hash order while their running total stays within
    ``rest``; the gap left (less than the next document) is filled first-fit by the following
    documents in hash order that still fit, so a source of large documents gets as close as
    its sizes allow. DuckDB sorts; Python holds only the fill candidates, fetched in batches.
    """
    if not rest or not files:
        return {}
    con.execute("CREATE OR REPLACE TEMP TABLE want(source VARCHAR, rest DOUBLE)")
    con.executemany("INSERT INTO want VALUES (?, ?)", list(rest.items()))
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT i.source, i.h, i.n, w.rest,
               sum(i.n) OVER (PARTITION BY i.source ORDER BY i.h ROWS UNBOUNDED PRECEDING) AS cum
        FROM read_parquet($f) i JOIN want w USING (source)
        """,
        {"f": files},
    )
    prefix = {
        s: (h, int(n or 0))
        for s, h, n in con.execute(
            "SELECT w.source, max(r.h) FILTER (WHERE r.cum <= w.rest), sum(r.n) FILTER (WHERE r.cum <= w.rest) "
            "FROM want w LEFT JOIN ranked r USING (source) GROUP BY w.source"
        ).fetchall()
    }
    out = {}
    for s, (cut, tokens) in prefix.items():
        gap = rest[s] - tokens
        fill: list[int] = []
        cur = con.execute(
            "SELECT h, n FROM ranked WHERE source = ? AND n <= ? AND (? IS NULL OR h > ?) ORDER BY h",
            [s, gap, cut, cut],
        )
        while gap >= 1:
            rows = cur.fetchmany(10_000)
            if not rows:
                break
            for h, n in rows:
                if n <= gap:
                    fill.append(int(h))
                    tokens += int(n)
                    gap -= n
        out[s] = (None if cut is None else int(cut), fill, tokens)
    con.execute("DROP TABLE ranked")
    return out


# -- write -------------------------------------------------------------------------------------
def write_mixed(staging_dir: Path, shard: int, mix: dict[str, Any], dtype: np.dtype) -> dict[str, Any]:
    """The mixed train stream of one input shard: one file per pass, and their token counts."""
    index = pq.read_table(index_file(staging_dir, shard))
    src = index.column("source").to_pylist()
    h = index.column("h").to_numpy()
    n = index.column("n").to_numpy()
    tokens = np.fromfile(stream_file(staging_dir, "train", shard), dtype=dtype)
    if tokens.size != int((n + 1).sum()):
        raise RuntimeError(f"tokenize.mix: shard {shard}'s train stream does not match its index")
    sources = mix["sources"]
    whole = np.array([sources[s]["whole_epochs"] if s in sources else 0 for s in src], dtype=np.int64)
    cutoffs = [sources[s]["cutoff"] if s in sources else None for s in src]
    has_cut = np.array([c is not None for c in cutoffs], dtype=bool)
    cut = np.array([c or 0 for c in cutoffs], dtype=np.uint64)
    in_partial = has_cut & (h <= cut)
    fill = np.array([x for v in sources.values() for x in v["fill"]], dtype=np.uint64)
    if len(fill):
        in_partial |= np.isin(h, fill)
    out = []
    for p in range(mix["passes"]):
        take = (whole > p) | ((whole == p) & in_partial)
        mask = np.repeat(take, n + 1)
        part = tokens[mask]
        path = mixed_stream_file(staging_dir, p, shard)
        part.tofile(path)
        out.append({"pass": p, "shard": shard, "tokens": int(part.size), "docs": int(take.sum())})
    return {"shard": shard, "passes": out}


def mix_markdown(mix: dict[str, Any]) -> str:
    """The mixture as a markdown table: tokens per source before and after, shares, epochs."""
    lines = [
        f"## Source mixture ({mix['mode']}, seed {mix['seed']}, max_epochs {mix['max_epochs']:g})",
        "",
        "| source | requested share | share | tokens before | tokens after | epochs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s, v in mix["sources"].items():
        lines.append(
            f"| {s or '(none)'} | {v['requested_share']:.4f} | {v['share']:.4f} | {v['tokens_before']:,} | "
            f"{v['tokens_after']:,} | {v['epochs']:.3f} |"
        )
    lines.append(f"| total | | | {mix['tokens_before']:,} | {mix['tokens_after']:,} | |")
    for note in mix["notes"]:
        lines.append(f"\n- note: {note}")
    for w in mix["warnings"]:
        lines.append(f"\n- **warning**: {w}")
    return "\n".join(lines) + "\n"
