"""The held-out text every variant's proxy model is scored on: fixed, shared and decontaminated.

How it is chosen (by default): the documents of the baseline's tokenize input that

1. fall in tokenize's val split by the hash of their id (the split depends on the id alone,
   so no run's tokenize puts them in its training stream);
2. are kept by *every* run (present in each run's tokenize input), so the set is text all
   variants agree is in the corpus, and no variant is favoured by being scored on documents
   only it keeps;
3. are in no run's training split (checked in each run's ``docs`` view, in case a variant
   changes ``val_fraction``);
4. share no word ``ngram``-gram (13, as GPT-3's decontamination) with any document any run
   trains on (hashed n-grams; documents shorter than ``ngram`` words cannot be checked and are
   left out);

at most ``max_docs`` of them, the smallest by a seeded hash of their id. Or ``--heldout FILE``
names the texts (any ingest source), decontaminated the same way. The set is written beside
the ablation report so it can be inspected and reused.

Scores are tokenizer-independent where they must be compared across variants whose
tokenizers differ: each document is scored on its own (after an end-of-text token, in
windows of the model's context), and the summed negative log-likelihood is divided by the
document bytes (bits per byte) and by whitespace-separated words (word perplexity, as
lm-evaluation-harness reports); token perplexity is given too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from ..dataset import DATA_VIEW, Dataset
from ..filter.batch import TextBatch
from ..tokenize.formats import is_val, unit_hash

WORD = r"[\pL\pN]"
HELDOUT_SEED = 7  # which val documents are taken when there are more than max_docs


@dataclass
class HeldOut:
    ids: list[str]
    texts: list[str]
    stats: dict[str, Any]

    def table(self) -> pa.Table:
        return pa.table({"id": self.ids, "text": self.texts})


def ngram_hashes(texts: list[str] | pa.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(document index, hash) of every word n-gram (lowercase words holding a letter or digit)."""
    b = TextBatch(texts)
    lower = b.lower_words
    keep = pc.match_substring_regex(lower, WORD).to_numpy(zero_copy_only=False)
    words = lower.filter(pa.array(keep))
    doc = b.words.doc[keep]
    if len(words) < n:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    encoded = pc.dictionary_encode(words)
    vocab = encoded.dictionary.to_pylist()
    wh = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in vocab), np.uint64, len(vocab))
    h = wh[encoded.indices.to_numpy(zero_copy_only=False)]
    m = len(h) - n + 1
    out = np.zeros(m, np.uint64)
    mult = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for j in range(n):
            out = out * mult + h[j : j + m]
    same = doc[:m] == doc[n - 1 :]
    return doc[:m][same], out[same]


def word_counts(texts: list[str]) -> np.ndarray:
    b = TextBatch(texts)
    keep = pc.match_substring_regex(b.lower_words, WORD).to_numpy(zero_copy_only=False)
    return np.bincount(b.words.doc[keep], minlength=b.n)


def _files(d: Dataset, view: str = DATA_VIEW) -> list[str]:
    return [str(p) for v in d.chain() if view in v.manifest["views"] for p in v.shard_paths(view)]


def candidates(
    baseline_input: Dataset, val_fraction: float, max_docs: int, scan_limit: int
) -> tuple[list[str], list[str], int]:
    """Val-split documents of the baseline's tokenize input: the ``scan_limit`` smallest by a
    seeded id hash (bounded memory). Returns (ids, texts, val documents seen)."""
    keep_h = np.zeros(0, np.uint64)
    keep_ids: list[str] = []
    keep_texts: list[str] = []
    seen = 0
    for v in baseline_input.chain():
        for batch in v.iter_batches(columns=["id", "text"], batch_size=4_096):
            ids = batch.column(0).to_pylist()
            val = is_val(ids, val_fraction)
            if not val.any():
                continue
            idx = np.flatnonzero(val)
            seen += len(idx)
            texts = batch.column(1).to_pylist()
            new_ids = [ids[i] for i in idx]
            h = np.concatenate([keep_h, unit_hash(new_ids, HELDOUT_SEED)])
            all_ids = keep_ids + new_ids
            all_texts = keep_texts + [texts[i] for i in idx]
            order = np.argsort(h, kind="stable")[:scan_limit]
            keep_h = h[order]
            keep_ids = [all_ids[i] for i in order]
            keep_texts = [all_texts[i] for i in order]
    return keep_ids, keep_texts, seen


def in_every(ids: list[str], inputs: list[Dataset]) -> np.ndarray:
    """Which ids every dataset holds (DuckDB semi joins over each one's id column)."""
    con = duckdb.connect()
    cand = pa.table({"id": ids, "i": np.arange(len(ids))})
    con.register("cand", cand)
    ok = np.ones(len(ids), bool)
    for d in {d.fingerprint: d for d in inputs}.values():
        present = {
            r[0]
            for r in con.execute(
                "SELECT i FROM cand SEMI JOIN read_parquet($f) USING (id)", {"f": _files(d)}
            ).fetchall()
        }
        ok &= np.isin(np.arange(len(ids)), list(present))
    return ok


def trained_on(ids: list[str], tokenized: list[Dataset]) -> np.ndarray:
    """Which ids some run's tokenize put in its train split (its ``docs`` view)."""
    con = duckdb.connect()
    con.register("cand", pa.table({"id": ids, "i": np.arange(len(ids))}))
    hit = np.zeros(len(ids), bool)
    for d in {d.fingerprint: d for d in tokenized}.values():
        rows = con.execute(
            "SELECT DISTINCT c.i FROM cand c JOIN read_parquet($f) d USING (id) WHERE d.split = 'train'",
            {"f": _files(d, "docs")},
        ).fetchall()
        hit[[r[0] for r in rows]] = True
    return hit


def contaminated(texts: list[str], training: list[tuple[Dataset, Dataset]], n: int) -> tuple[np.ndarray, int]:
    """Which texts share a word n-gram with a document some run trains on.

    ``training``: (tokenize input, tokenize output) per run; the training documents are the
    input's documents the output put in its train split. Streams each distinct input once.
    Returns (mask, training documents scanned).
    """
    doc, h = ngram_hashes(texts, n)
    order = np.argsort(h)
    h, doc = h[order], doc[order]
    hit = np.zeros(len(texts), bool)
    scanned = 0
    con = duckdb.connect()
    done: set[tuple[str, str]] = set()
    for inp, tok in training:
        if (inp.fingerprint, tok.fingerprint) in done:
            continue
        done.add((inp.fingerprint, tok.fingerprint))
        cur = con.execute(
            "SELECT t.text FROM read_parquet($inp) t SEMI JOIN "
            "(SELECT id FROM read_parquet($docs) WHERE split = 'train') d USING (id)",
            {"inp": _files(inp), "docs": _files(tok, "docs")},
        )
        while chunk := cur.fetchmany(2_048):
            scanned += len(chunk)
            _, th = ngram_hashes([r[0] for r in chunk], n)
            if len(th) and len(h):
                found = np.unique(th[np.isin(th, h)])
                lo, hi = np.searchsorted(h, found, "left"), np.searchsorted(h, found, "right")
                # every candidate holding a found n-gram (equal hashes are adjacent in h)
                for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
                    hit[doc[a:b]] = True
    return hit, scanned


def choose(
    baseline_input: Dataset,
    val_fraction: float,
    inputs: list[Dataset],
    training: list[tuple[Dataset, Dataset]],
    max_docs: int = 400,
    ngram: int = 13,
    texts: list[str] | None = None,
) -> HeldOut:
    """The held-out set (see the module docstring); ``texts`` replaces the default candidates."""
    stats: dict[str, Any] = {"ngram": ngram}
    if texts is None:
        ids, cand, seen = candidates(baseline_input, val_fraction, max_docs, scan_limit=max_docs * 4)
        stats.update(source="val split of the baseline's tokenize input", val_docs=seen, scanned=len(ids))
        every = in_every(ids, inputs)
        trained = trained_on(ids, [t for _, t in training])
        stats["not_kept_by_every_run"] = int((~every).sum())
        stats["trained_on_by_a_run"] = int((every & trained).sum())
        ok = every & ~trained
    else:
        ids = [f"heldout:{i}" for i in range(len(texts))]
        cand = texts
        stats.update(source="given texts", scanned=len(ids))
        ok = np.ones(len(ids), bool)
    short = word_counts(cand) < ngram
    stats["shorter_than_ngram"] = int((ok & short).sum())
    ok &= ~short
    hit, scanned = contaminated([t for t, k in zip(cand, ok, strict=True) if k], training, ngram)
    stats["contaminated"] = int(hit.sum())
    stats["training_docs_checked"] = scanned
    keep_idx = np.flatnonzero(ok)[~hit][:max_docs]
    chosen_ids = [ids[i] for i in keep_idx]
    chosen = [cand[i] for i in keep_idx]
    stats.update(
        docs=len(chosen),
        bytes=sum(len(t.encode()) for t in chosen),
        words=int(word_counts(chosen).sum()) if chosen else 0,
    )
    return HeldOut(chosen_ids, chosen, stats)


# -- scoring ---------------------------------------------------------------------------------------------
def score(checkpoint: Path, held: HeldOut, batch_size: int = 16) -> dict[str, Any]:
    """Negative log-likelihood of every held-out text under a checkpoint, and what it makes."""
    import torch

    from ..finetune.train import open_tokenizer
    from ..models.checkpoint import load_model
    from ..models.runtime import TORCH_PROCESS_LOCK

    with TORCH_PROCESS_LOCK, torch.no_grad():
        tok = open_tokenizer(checkpoint)
        model, mcfg = load_model(checkpoint, "cpu")
        window = mcfg.block_size
        rows: list[np.ndarray] = []
        n_tokens = 0
        for ids in tok.encode_batch(held.texts):
            seq = np.array([tok.eot_id, *ids], dtype=np.int64)
            n_tokens += len(ids)
            # Consecutive windows: every token is predicted once, from at most `window` before it.
            for start in range(0, len(seq) - 1, window):
                rows.append(seq[start : start + window + 1])
        total = 0.0
        order = np.argsort([len(r) for r in rows], kind="stable")
        for s in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[s : s + batch_size]]
            width = max(len(r) for r in batch) - 1
            x = torch.zeros((len(batch), width), dtype=torch.long)
            y = torch.full((len(batch), width), -1, dtype=torch.long)
            for k, r in enumerate(batch):
                x[k, : len(r) - 1] = torch.from_numpy(r[:-1])
                y[k, : len(r) - 1] = torch.from_numpy(r[1:])
            _, loss = model(x, y)
            total += float(loss) * int((y != -1).sum())
    nats = total
    n_bytes, n_words = held.stats["bytes"], held.stats["words"]
    return {
        "nll_nats": nats,
        "tokens": n_tokens,
        "bits_per_byte": nats / n_bytes / math.log(2) if n_bytes else None,
        "word_perplexity": math.exp(nats / n_words) if n_words else None,
        "token_perplexity": math.exp(nats / n_tokens) if n_tokens else None,
    }


def write(held: HeldOut, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(held.table(), path, compression="zstd")
    return path
