"""Locality-sensitive hashing over MinHash signatures: the match curve and candidate pairs.

Two documents with Jaccard similarity J share at least one of b bands of r rows with probability
``1 - (1 - J**r)**b``. Candidate pairs come from grouping each band's hashes out of core in
DuckDB: every member of a bucket is paired with the bucket's earliest document (a star, so a
bucket of n documents gives n - 1 pairs, not n**2).
"""

from __future__ import annotations

from functools import lru_cache
from typing import overload

import numpy as np

from .workspace import band_column


@overload
def match_probability(j: float, bands: int, rows: int) -> float: ...
@overload
def match_probability(j: np.ndarray, bands: int, rows: int) -> np.ndarray: ...
def match_probability(j: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    return 1.0 - (1.0 - np.asarray(j, dtype=float) ** rows) ** bands


@lru_cache(maxsize=64)
def choose_bands(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """The (bands, rows) with bands*rows <= num_perm that minimize the weighted area of false
    positives (match probability below the threshold) and false negatives (miss probability
    above it)."""
    best, best_cost = (1, 1), float("inf")
    lo, hi = np.linspace(0, threshold, 201), np.linspace(threshold, 1, 201)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(match_probability(lo, b, r), lo)
            fn = np.trapezoid(1 - match_probability(hi, b, r), hi)
            cost = fp_weight * fp + (1 - fp_weight) * fn
            if cost < best_cost - 1e-12:
                best, best_cost = (b, r), cost
    return best


def curve(bands: int, rows: int, step: float = 0.05) -> list[dict[str, float]]:
    """The match probability at J = 0, step, ..., 1, for reports."""
    js = np.round(np.arange(0, 1 + step / 2, step), 4)
    return [
        {"jaccard": float(j), "p_match": round(float(p), 6)}
        for j, p in zip(js, match_probability(js, bands, rows), strict=True)
    ]


def bucket_pairs_sql(bands: int, part: int, parts: int, new_base: int, out: str) -> str:
    """Distinct star pairs (ord, rep) over all bands of one hash partition, for buckets that
    hold a new document.

    Exact duplicates already removed are left out, so a heavily copied text makes no pairs.
    """
    cols = ", ".join(f"a.{band_column(b)}" for b in range(bands))
    return f"""
    COPY (
      WITH m AS (
        SELECT ord, band, bh FROM (
          SELECT a.ord, unnest(range({bands})) AS band, unnest([{cols}]) AS bh FROM allsigs a
          WHERE a.{band_column(0)} IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM exact e WHERE e.ord = a.ord)
        ) WHERE bh % {parts} = {part}
      ), g AS (
        SELECT band, bh, min(ord) AS rep FROM m GROUP BY band, bh
        HAVING count(*) > 1 AND max(ord) >= {new_base}
      )
      SELECT DISTINCT m.ord, g.rep FROM m JOIN g USING (band, bh)
      WHERE m.ord <> g.rep AND m.ord >= {new_base}
      ORDER BY m.ord, g.rep
    ) TO '{out}' (FORMAT parquet)
    """
