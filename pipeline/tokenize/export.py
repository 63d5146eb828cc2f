"""Token datasets in the files other trainers read: Megatron's indexed dataset and nanoGPT's memmaps.

Both read the tokenize version's ``docs`` view (every encoded document with its split; the whole
series of an incremental dataset, oldest version first), so nothing is lost to packing.

megatron  ``OUT/{split}.bin`` + ``OUT/{split}.idx``, the ``MMIDIDX`` indexed dataset that
          Megatron-LM / Megatron-Core (and NeMo, nanotron's converters) read: one sequence per
          document, one document per sequence. ``.idx``: the magic ``MMIDIDX\\x00\\x00``, version 1
          (<Q), the dtype code (<B: 8 uint16, 4 int32), the sequence count (<Q), the document-index
          count (<Q, sequences + 1), then each sequence's length (int32), its byte offset in
          ``.bin`` (int64), and the document boundaries 0..n (int64). ids are uint16 below 65,500
          ids and int32 above, as Megatron picks. ``append_eot`` ends each sequence with the
          end-of-text id (Megatron's ``--append-eod``); off by default, so sequences equal the docs.
nanogpt   ``OUT/train.bin`` + ``OUT/val.bin``: every document's ids followed by end-of-text, as one
          flat uint16 array, what nanoGPT's ``train.py`` memory-maps; plus ``meta.pkl`` (vocab_size,
          and stoi/itos for a character tokenizer, as nanoGPT's shakespeare_char) where nanoGPT needs
          it. More than 65,536 ids do not fit uint16: an error.
Both also get ``tokenizer/`` and ``export.json`` (source, vocabulary, dtype, per-split counts).
Memory stays bounded: documents stream a batch at a time; Megatron's per-document lengths go to a
scratch file and the index is written from it in chunks.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from ..dataset import Dataset
from ..errors import ConfigError
from .formats import DOCS_VIEW, SPLITS, TOKENIZER_DIR

MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
MEGATRON_DTYPE_CODES: dict[np.dtype, int] = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
MEGATRON_UINT16_LIMIT = 65_500  # Megatron uses uint16 for vocabularies below this size
NANOGPT_SPLITS = {"train": "train.bin", "val": "val.bin"}
EXPORT_JSON = "export.json"
_CHUNK = 1 << 20  # index entries per write


def token_dataset(dataset: Dataset) -> dict[str, Any]:
    totals = dataset.manifest.get("totals", {})
    if dataset.stage != "tokenize" or "vocab_size" not in totals:
        raise ConfigError(f"{dataset.path}: not a tokenize dataset (stage {dataset.stage!r})")
    return totals


def iter_docs(dataset: Dataset, batch_size: int = 8_192) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(split, concatenated ids, per-document lengths) per batch of the docs view, series in order."""
    for version in dataset.chain():
        for batch in version.iter_batches(DOCS_VIEW, columns=["input_ids", "split"], batch_size=batch_size):
            for split in SPLITS:
                rows = batch.filter(pc.equal(batch.column("split"), split))
                if rows.num_rows == 0:
                    continue
                ids = rows.column("input_ids")
                flat = ids.flatten().to_numpy(zero_copy_only=False)
                lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)
                yield split, flat, lengths


def with_eot(flat: np.ndarray, lengths: np.ndarray, eot_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Each document followed by the end-of-text id."""
    return np.insert(flat, np.cumsum(lengths), eot_id), lengths + 1


class MegatronWriter:
    """One split's ``.bin`` / ``.idx`` pair, written as documents arrive."""

    def __init__(self, prefix: Path, dtype: np.dtype):
        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        self.bin = open(prefix.with_suffix(".bin"), "wb")
        self.scratch_path = prefix.with_suffix(".lengths.tmp")
        self.scratch = open(self.scratch_path, "wb")
        self.sequences = 0
        self.tokens = 0

    def add(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        self.bin.write(flat.astype(self.dtype, copy=False).tobytes())
        self.scratch.write(lengths.astype(np.int32).tobytes())
        self.sequences += len(lengths)
        self.tokens += int(lengths.sum())

    def finish(self) -> dict[str, int]:
        self.bin.close()
        self.scratch.close()
        n = self.sequences
        with open(self.prefix.with_suffix(".idx"), "wb") as idx:
            idx.write(MEGATRON_MAGIC)
            idx.write(struct.pack("<Q", MEGATRON_VERSION))
            idx.write(struct.pack("<B", MEGATRON_DTYPE_CODES[self.dtype]))
            idx.write(struct.pack("<Q", n))
            idx.write(struct.pack("<Q", n + 1))
            lengths = np.memmap(self.scratch_path, dtype=np.int32, mode="r") if n else np.zeros(0, np.int32)
            for s in range(0, n, _CHUNK):
                idx.write(np.asarray(lengths[s : s + _CHUNK]).tobytes())
            offset = 0
            for s in range(0, n, _CHUNK):
                sizes = np.asarray(lengths[s : s + _CHUNK], dtype=np.int64) * self.dtype.itemsize
                starts = offset + np.concatenate([[0], np.cumsum(sizes)[:-1]])
                idx.write(starts.astype(np.int64).tobytes())
                offset += int(sizes.sum())
            for s in range(0, n + 1, _CHUNK):
                idx.write(np.arange(s, min(s + _CHUNK, n + 1), dtype=np.int64).tobytes())
            del lengths
        os.unlink(self.scratch_path)
        return {"documents": n, "tokens": self.tokens}


def export_megatron(dataset: Dataset, out: str | Path, append_eot: bool = False) -> dict[str, Any]:
    """Write each split of a tokenize dataset as a Megatron indexed dataset under ``out``."""
    totals = token_dataset(dataset)
    vocab, eot = int(totals["vocab_size"]), int(totals["eot_id"])
    dtype = np.dtype(np.uint16 if vocab < MEGATRON_UINT16_LIMIT else np.int32)
    out = _fresh_dir(out)
    writers = {s: MegatronWriter(out / s, dtype) for s in SPLITS}
    for split, flat, lengths in iter_docs(dataset):
        if append_eot:
            flat, lengths = with_eot(flat, lengths, eot)
        writers[split].add(flat, lengths)
    splits = {s: w.finish() for s, w in writers.items()}
    files = {s: [f"{s}.bin", f"{s}.idx"] for s in SPLITS}
    return _finish(dataset, out, "megatron", dtype, splits, files, append_eot=append_eot)


def export_nanogpt(dataset: Dataset, out: str | Path) -> dict[str, Any]:
    """Write ``train.bin`` / ``val.bin`` (uint16, documents each followed by end-of-text) under ``out``."""
    totals = token_dataset(dataset)
    vocab, eot = int(totals["vocab_size"]), int(totals["eot_id"])
    if vocab > 1 << 16:
        raise ConfigError(
            f"{dataset.path}: the tokenizer has {vocab:,} ids; nanoGPT's train.bin holds uint16 ids "
            f"(at most 65,536). Export it --to megatron instead, or tokenize with a smaller vocabulary"
        )
    out = _fresh_dir(out)
    splits = {s: {"documents": 0, "tokens": 0} for s in SPLITS}
    handles = {s: open(out / NANOGPT_SPLITS[s], "wb") for s in SPLITS}
    try:
        for split, flat, lengths in iter_docs(dataset):
            flat, lengths = with_eot(flat, lengths, eot)
            handles[split].write(flat.astype(np.uint16).tobytes())
            splits[split]["documents"] += len(lengths)
            splits[split]["tokens"] += int(lengths.sum())
    finally:
        for h in handles.values():
            h.close()
    meta = _nanogpt_meta(dataset, vocab)
    if meta is not None:
        with open(out / "meta.pkl", "wb") as f:
            pickle.dump(meta, f)
    files = {s: [NANOGPT_SPLITS[s]] for s in SPLITS}
    return _finish(dataset, out, "nanogpt", np.dtype(np.uint16), splits, files, append_eot=True)


def _nanogpt_meta(dataset: Dataset, vocab: int) -> dict[str, Any] | None:
    """nanoGPT's meta.pkl: its train.py reads vocab_size from it, its sample.py a char codec.

    Written for character tokenizers (vocab_size, stoi, itos) and for vocabularies larger than the
    50,304 nanoGPT assumes without it; sample.py would misread a BPE vocabulary as characters.
    """
    meta_file = dataset.path / TOKENIZER_DIR / "tokenizer_meta.json"
    kind = json.loads(meta_file.read_text()).get("kind") if meta_file.is_file() else None
    if kind == "char":
        from .tokenizer import load_tokenizer

        tok = load_tokenizer(dataset.path / TOKENIZER_DIR)
        itos = {i: s for s, i in tok.tokenizer.get_vocab(with_added_tokens=True).items()}
        return {"vocab_size": vocab, "itos": itos, "stoi": {s: i for i, s in itos.items()}}
    return {"vocab_size": vocab} if vocab > 50_304 else None


def _fresh_dir(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finish(
    dataset: Dataset,
    out: Path,
    fmt: str,
    dtype: np.dtype,
    splits: dict[str, dict[str, int]],
    files: dict[str, list[str]],
    **extra: Any,
) -> dict[str, Any]:
    totals = dataset.manifest["totals"]
    tok_src = dataset.path / TOKENIZER_DIR
    if tok_src.is_dir():
        shutil.copytree(tok_src, out / TOKENIZER_DIR)
    info = {
        "format": fmt,
        "source": str(dataset.path),
        "fingerprint": dataset.fingerprint,
        "vocab_size": int(totals["vocab_size"]),
        "eot_id": int(totals["eot_id"]),
        "dtype": dtype.name,
        **extra,
        "splits": {s: {**splits[s], "files": files[s]} for s in SPLITS},
    }
    (out / EXPORT_JSON).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def read_megatron(prefix: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids memmap, sequence lengths, byte offsets) of a ``prefix.bin`` / ``prefix.idx`` pair.

    A reader of the published layout, for checks and for users without Megatron installed.
    """
    prefix = Path(prefix)
    with open(prefix.with_suffix(".idx"), "rb") as f:
        if f.read(len(MEGATRON_MAGIC)) != MEGATRON_MAGIC:
            raise ConfigError(f"{prefix.with_suffix('.idx')}: not a Megatron index (bad magic)")
        (version,) = struct.unpack("<Q", f.read(8))
        (code,) = struct.unpack("<B", f.read(1))
        (n,) = struct.unpack("<Q", f.read(8))
        (_docs,) = struct.unpack("<Q", f.read(8))
        header = f.tell()
    if version != MEGATRON_VERSION:
        raise ConfigError(f"{prefix.with_suffix('.idx')}: index version {version}, expected 1")
    dtype = {c: d for d, c in MEGATRON_DTYPE_CODES.items()}[code]
    idx = np.memmap(prefix.with_suffix(".idx"), mode="r", offset=header, dtype=np.uint8)
    lengths = np.frombuffer(idx[: 4 * n].tobytes(), dtype=np.int32)
    pointers = np.frombuffer(idx[4 * n : 12 * n].tobytes(), dtype=np.int64)
    size = prefix.with_suffix(".bin").stat().st_size
    ids = np.memmap(prefix.with_suffix(".bin"), mode="r", dtype=dtype) if size else np.zeros(0, dtype)
    return ids, lengths, pointers
