"""Streaming the packed token shards into training and validation batches.

The tokenize stage's data view holds rows of exactly ``seq_len + 1`` tokens, already shuffled
globally, in shards named ``train-*`` and ``val-*`` with row groups of about a thousand rows.
Training reads one row group at a time: each epoch visits the row groups in a seeded order and
each group's rows in a seeded order, so memory stays at one row group however large the corpus.
The stream's position is three integers (epoch, group, row); saved in a checkpoint, it lets a
resumed run see exactly the batches the uninterrupted run would have seen.

A stream can also train on windows shorter than the rows: each row then yields one window at a
random offset, drawn afresh each epoch from the seed, the epoch and the row group. This is
nanoGPT's sampling (a window may start at any token, not only at the row boundaries the packing
fixed), and it needs no extra state: the offsets follow from the same position.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..dataset import Dataset
from ..errors import DataError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class RowGroup:
    path: Path
    index: int
    rows: int


class PackedSequences:
    """The packed sequences of one split of a tokenize dataset, read a row group at a time."""

    def __init__(self, dataset: Dataset | str | Path, split: str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        self.dataset = dataset if isinstance(dataset, Dataset) else Dataset(Path(dataset))
        totals = self.dataset.manifest.get("totals", {})
        if "seq_len" not in totals:
            raise DataError(f"{self.dataset.path}: not a token dataset (no seq_len in the manifest totals)")
        self.split = split
        self.seq_len = int(totals["seq_len"])
        self.vocab_size = int(totals["vocab_size"])
        self.groups: list[RowGroup] = []
        # An incremental token dataset is a chain of versions: train on all of them, oldest first.
        paths = [p for version in self.dataset.chain() for p in version.shard_paths()]
        for path in paths:
            if not path.name.startswith(f"{split}-"):
                continue
            meta = pq.ParquetFile(path).metadata
            self.groups += [RowGroup(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
        self.groups = [g for g in self.groups if g.rows > 0]
        self.num_rows = sum(g.rows for g in self.groups)

    @property
    def row_len(self) -> int:
        return self.seq_len + 1

    @property
    def num_tokens(self) -> int:
        return self.num_rows * self.seq_len

    def read_group(self, i: int) -> np.ndarray:
        """Row group ``i`` as an integer array of shape (rows, seq_len + 1)."""
        g = self.groups[i]
        column = pq.ParquetFile(g.path).read_row_group(g.index, columns=["input_ids"]).column(0)
        flat = pa.concat_arrays(column.chunks).flatten().to_numpy(zero_copy_only=False)
        if flat.size != g.rows * self.row_len:
            raise DataError(
                f"row group {g.index} holds {flat.size} tokens, expected {g.rows} rows of {self.row_len}",
                path=str(g.path),
            )
        return flat.reshape(g.rows, self.row_len)

    def iter_rows(self) -> Iterator[np.ndarray]:
        """Every row group in stored order (for validation and statistics)."""
        for i in range(len(self.groups)):
            yield self.read_group(i)


class BatchStream:
    """An endless, seeded, resumable stream of training batches from one split.

    Under data parallelism every process builds the same stream of global batches of
    ``batch_size * world_size`` rows and keeps its own slice, so the global batch sequence is
    the same whatever the number of processes.
    """

    def __init__(
        self,
        sequences: PackedSequences,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        position: dict[str, int] | None = None,
        window: int | None = None,
    ):
        if sequences.num_rows == 0:
            raise DataError(f"{sequences.dataset.path}: the {sequences.split} split has no sequences")
        if window is not None and not 1 <= window <= sequences.seq_len:
            raise ValueError(f"window {window} must be between 1 and the rows' seq_len {sequences.seq_len}")
        self.seq = sequences
        self.window = window if window is not None and window < sequences.seq_len else None
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        pos = position or {}
        self.epoch, self.group, self.row = pos.get("epoch", 0), pos.get("group", 0), pos.get("row", 0)
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, group order) cache
        self._rows: tuple[tuple[int, int], np.ndarray] | None = None  # ((epoch, group), rows) cache

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "group": self.group, "row": self.row}

    def _group_order(self) -> np.ndarray:
        if self._order is None or self._order[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = (self.epoch, rng.permutation(len(self.seq.groups)))
        return self._order[1]

    def _group_rows(self) -> np.ndarray:
        key = (self.epoch, self.group)
        if self._rows is None or self._rows[0] != key:
            g = int(self._group_order()[self.group])
            rows = self.seq.read_group(g)
            rng = np.random.default_rng([self.seed, self.epoch, g])
            rows = rows[rng.permutation(len(rows))]
            if self.window is not None:
                rows = random_windows(rows, self.window, rng)
            self._rows = (key, rows)
        return self._rows[1]

    def _take(self, n: int) -> np.ndarray:
        """The next n rows of the stream, across row groups and epochs."""
        parts = []
        while n > 0:
            rows = self._group_rows()
            piece = rows[self.row : self.row + n]
            parts.append(piece)
            n -= len(piece)
            self.row += len(piece)
            if self.row >= len(rows):
                self.row, self.group = 0, self.group + 1
                if self.group >= len(self.seq.groups):
                    self.group, self.epoch = 0, self.epoch + 1
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def next_batch(self) -> torch.Tensor:
        """This process's rows of the next global batch, (batch_size, L + 1) int64; L: window or seq_len."""
        rows = self._take(self.batch_size * self.world_size)
        mine = rows[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return torch.from_numpy(mine.astype(np.int64))


def random_windows(rows: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """One ``window + 1``-token slice of each row, at a uniformly random offset."""
    offsets = rng.integers(0, rows.shape[1] - window, size=len(rows))  # last start: seq_len - window
    return rows[np.arange(len(rows))[:, None], offsets[:, None] + np.arange(window + 1)]


def validation_batches(
    sequences: PackedSequences, batch_size: int, max_batches: int
) -> Iterator[torch.Tensor]:
    """The first ``max_batches`` batches of a split in stored order: the same ones at every eval."""
    buffered: list[np.ndarray] = []
    have = done = 0
    for rows in sequences.iter_rows():
        buffered.append(rows)
        have += len(rows)
        while have >= batch_size and done < max_batches:
            block = np.concatenate(buffered)
            yield torch.from_numpy(block[:batch_size].astype(np.int64))
            buffered, have, done = [block[batch_size:]], have - batch_size, done + 1
        if done >= max_batches:
            return
    if have and done < max_batches:  # a short last batch rather than dropping the tail
        yield torch.from_numpy(np.concatenate(buffered).astype(np.int64))


def unigram_entropy(sequences: PackedSequences) -> float | None:
    """Entropy (nats/token) of the split's own unigram distribution over its target tokens.

    This is the loss of the best model that ignores context, fitted on the very tokens it is
    scored on: a language model that has learned anything beats it.
    """
    counts = np.zeros(sequences.vocab_size, dtype=np.int64)
    for rows in sequences.iter_rows():
        counts += np.bincount(rows[:, 1:].ravel(), minlength=sequences.vocab_size)[: sequences.vocab_size]
    total = counts.sum()
    if total == 0:
        return None
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def describe(sequences: PackedSequences) -> dict[str, Any]:
    return {"split": sequences.split, "rows": sequences.num_rows, "row_groups": len(sequences.groups)}
