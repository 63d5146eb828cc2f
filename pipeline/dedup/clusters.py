"""Connected components of the verified candidate pairs: a vectorized union-find.

Nodes are dense ids 0..n-1 given in ord order, so the root of a component, which is always its
smallest id, is its earliest document: the deterministic keeper. Pairs stream in batches;
memory is one int64 per document that has a pair, not per document of the corpus.
"""

from __future__ import annotations

import numpy as np


class UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def _flatten(self) -> None:
        """Point every node straight at its root (pointer jumping until nothing moves)."""
        p = self.parent
        while True:
            pp = p[p]
            if np.array_equal(pp, p):
                break
            p = pp
        self.parent = p

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        """Merge the components of each pair u[i], v[i]; the smaller root always wins."""
        while u.size:
            ru, rv = self.parent[u], self.parent[v]
            differ = ru != rv
            if not differ.any():
                return
            u, v, ru, rv = u[differ], v[differ], ru[differ], rv[differ]
            np.minimum.at(self.parent, np.maximum(ru, rv), np.minimum(ru, rv))
            self._flatten()

    def roots(self) -> np.ndarray:
        self._flatten()
        return self.parent


def size_histogram(sizes: np.ndarray) -> dict[str, int]:
    """Cluster counts by size in power-of-two bins: "2", "3-4", "5-8", ..."""
    out: dict[str, int] = {}
    lo = 2
    while sizes.size and lo <= sizes.max():
        hi = 2 if lo == 2 else lo * 2 - 2
        n = int(((sizes >= lo) & (sizes <= hi)).sum())
        if n:
            out[str(lo) if lo == hi else f"{lo}-{hi}"] = n
        lo = hi + 1
    return out
