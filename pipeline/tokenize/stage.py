"""The tokenize stage: documents in, a tokenizer plus packed, shuffled training sequences out.

prepare  trains (or loads, or inherits from the previous version) the tokenizer, once, in the driver;
encode   per input shard: the docs view, rejects, and per-split token streams (encode.py);
mix      with ``mix``, per input shard: the train stream re-weighted by source (mixing.py);
scatter  per chunk of sequences: cut and send to random buckets (packing.py);
gather   per bucket: permute and write one shard of the packed view (packing.py).

``rows_out`` counts documents; the data view's rows are packed sequences.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import validation
from ..dataset import DATA_VIEW, REJECTS_VIEW, Dataset
from ..schema import REJECT_SCHEMA
from ..stage import Phase, Stage, StageContext, sum_counts
from .config import EOT_TOKEN, TokenizeConfig
from .encode import (
    encode_shards,
    encode_units,
    find_duplicate_ids,
    ids_checked_in_memory,
    remember_tokenizer,
    training_batches,
)
from .formats import DOCS_VIEW, SCRATCH_DIR, SPLITS, TOKENIZER_DIR, docs_schema, packed_schema
from .mixing import check_sources, index_file, known_sources, mix_markdown, plan_mixture, write_mixed
from .packing import gather_bucket, plan_gather, plan_scatter, scatter_chunk
from .tokenizer import TextTokenizer, build_char, load_tokenizer, source_digest, train_bpe


class TokenizeStage(Stage):
    name = "tokenize"
    inputs = ("decontaminate",)
    config_model = TokenizeConfig
    description = "Train (or load) the tokenizer, write per-document and packed token shards, validate them."
    schedule = "data"
    version = "1"
    data_schema = packed_schema(np.uint16)  # uint32 ids when the vocabulary needs them, see views()
    rows_out_is_data_rows = False

    def identity(self, config: TokenizeConfig, inputs: dict[str, Dataset], parent: Dataset | None) -> dict:  # type: ignore[override]
        ident = super().identity(config, inputs, parent)
        if config.tokenizer == "pretrained":
            # The file's bytes, not its path, decide the ids.
            ident["tokenizer_sha256"] = source_digest(config.tokenizer_path or "")
        return ident

    def validation_suites(self, staging_dir: Path, manifest: dict[str, Any]) -> list[validation.Suite]:
        return validation.tokens_suite(self, staging_dir, manifest, docs_view=DOCS_VIEW)

    def prepare(self, ctx: StageContext) -> None:
        validation.preload()  # with the gx engine: GX takes seconds to import, overlap it
        data = ctx.input()
        in_memory = ids_checked_in_memory(data)
        if in_memory and len(encode_units(data)) == 1:
            # One encode unit reads every row in order: it finds repeated ids as it goes
            # (encode.IdsSeen), and no pre-pass reads the id columns (a millisecond a shard).
            ctx.extra["duplicates"] = None
            self._tokenizer(ctx)
        elif in_memory:
            # A millisecond or two of Arrow, done first: in a thread it would wait on the GIL for
            # as long as the tokenizer's JSON parses (tokenizers holds it), 10-20 ms.
            ctx.extra["duplicates"] = find_duplicate_ids(data)
            self._tokenizer(ctx)
        else:
            # The DuckDB query releases the GIL: it runs while the tokenizer loads or trains.
            with ThreadPoolExecutor(1, thread_name_prefix="tokenize-ids") as pool:
                duplicates = pool.submit(find_duplicate_ids, data)
                self._tokenizer(ctx)
                ctx.extra["duplicates"] = duplicates.result()
        if ctx.config.mix is not None:
            check_sources(ctx.config.mix, known_sources(ctx.input()))

    def _tokenizer(self, ctx: StageContext) -> None:
        tok = make_tokenizer(ctx)
        tok.set_word_cache(ctx.config.word_cache)
        remember_tokenizer(tok.save(ctx.staging_dir / TOKENIZER_DIR), tok)
        ctx.extra["tokenizer"] = tok.meta()

    def summary_markdown(self, dataset: Dataset) -> str | None:
        mix = dataset.manifest.get("stats", {}).get("mix")
        return mix_markdown(mix) if mix else None

    def phases(self) -> list[Phase]:
        return [
            Phase("encode", plan_encode, encode_shards),
            Phase("mix", plan_mix, mix_shard),
            Phase("scatter", plan_scatter, scatter_chunk),
            Phase("gather", plan_gather, gather_bucket),
        ]

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        dtype = np.dtype(ctx.extra["tokenizer"]["dtype"])
        return {DATA_VIEW: packed_schema(dtype), DOCS_VIEW: docs_schema(dtype), REJECTS_VIEW: REJECT_SCHEMA}

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        cfg: TokenizeConfig = ctx.config
        shutil.rmtree(ctx.staging_dir / SCRATCH_DIR, ignore_errors=True)
        encoded = ctx.extra["encoded"]
        meta = ctx.extra["tokenizer"]
        docs = {s: sum(r["docs"][s] for r in encoded) for s in SPLITS}
        tokens = {s: sum(r["tokens"][s] for r in encoded) for s in SPLITS}
        stream = {s: sum(n for _, n in ctx.extra["streams"][s]) for s in SPLITS}
        packed = ctx.extra.get("packed")
        if packed is not None:  # by the encode unit (see packing.pack_alone)
            sequences = {s: packed[s] for s in SPLITS}
        else:
            sequences = {s: sum(r["rows"] for r in results if r["split"] == s) for s in SPLITS}
        text_bytes = sum(r["text_bytes"] for r in encoded)
        all_tokens = sum(tokens.values())
        totals = {
            "docs": sum(docs.values()),
            "docs_train": docs["train"],
            "docs_val": docs["val"],
            "tokens_train": tokens["train"],
            "tokens_val": tokens["val"],
            "sequences_train": sequences["train"],
            "sequences_val": sequences["val"],
            "seq_len": cfg.seq_len,
            "vocab_size": meta["vocab_size"],
            "eot_id": meta["eot_id"],
            "tokenizer_fingerprint": meta["fingerprint"],
            "text_bytes": text_bytes,
        }
        mix = ctx.extra.get("mix")
        if mix is not None:
            totals["tokens_train_mixed"] = mix["tokens_after"]
        stats = {
            "tokenizer": meta,
            "bytes_per_token": round(text_bytes / all_tokens, 4) if all_tokens else None,
            # Stream tokens not in any sequence: the tail of each split shorter than seq_len.
            "tokens_dropped": {
                s: stream[s] - sequences[s] * cfg.seq_len - (1 if sequences[s] else 0) for s in SPLITS
            },
            "shards": {s: ctx.extra["buckets"][s] for s in SPLITS},
            "tokens_by_source": merge_by_source(r["by_source"] for r in encoded),
        }
        if mix is not None:
            stats["mix"] = mix
        return {"counts": sum_counts(encoded), "stats": stats, "totals": totals}


def plan_encode(ctx: StageContext, _: list[Any]) -> list[list[int]]:
    return encode_units(ctx.input())


def plan_mix(ctx: StageContext, encoded: list[dict[str, Any]]) -> list[int]:
    """Record the encoded shards; with ``mix``, plan the mixture and mix each shard's train stream."""
    cfg: TokenizeConfig = ctx.config
    ctx.extra["packed"] = next((u["packed"] for u in encoded if u.get("packed") is not None), None)
    encoded = sorted((r for unit in encoded for r in unit["shards"]), key=lambda r: r["shard"])
    ctx.extra["encoded"] = encoded
    ctx.extra["mix"] = None
    if cfg.mix is None:
        return []
    ctx.extra["mix"] = plan_mixture(cfg.mix, [index_file(ctx.staging_dir, r["shard"]) for r in encoded])
    return [r["shard"] for r in encoded if r["stream"]["train"]]


def mix_shard(ctx: StageContext, shard: int) -> dict[str, Any]:
    return write_mixed(ctx.staging_dir, shard, ctx.extra["mix"], np.dtype(ctx.extra["tokenizer"]["dtype"]))


def merge_by_source(parts) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for s, counts in part.items():
            t = out.setdefault(s, {"train": 0, "val": 0})
            for k, v in counts.items():
                t[k] += v
    return dict(sorted(out.items()))


def make_tokenizer(ctx: StageContext) -> TextTokenizer:
    """The previous version's tokenizer (ids stay compatible), a loaded one, or one fitted here."""
    cfg: TokenizeConfig = ctx.config
    parent = ctx.parent_dataset()
    if parent is not None:
        return load_tokenizer(parent.path / TOKENIZER_DIR)
    if cfg.tokenizer == "pretrained":
        tok = load_tokenizer(cfg.tokenizer_path or "", cfg.eot_token)
        tok.info["source"] = {"path": str(cfg.tokenizer_path), "sha256": ctx.identity["tokenizer_sha256"]}
        return tok
    used: dict[str, int] = {}
    batches = training_batches(ctx.input(), cfg, used, include_val=cfg.tokenizer == "char")
    eot = cfg.eot_token or EOT_TOKEN
    if cfg.tokenizer == "char":
        tok = build_char(batches, eot, cfg.special_tokens)
    else:
        tok = train_bpe(batches, cfg.vocab_size, cfg.min_frequency, eot, cfg.special_tokens)
    tok.info["trained_on"] = dict(used)
    return tok
