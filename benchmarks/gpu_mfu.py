"""GPU throughput: a GPT-2 124M-shaped model trained in bf16 by the tokenmill loop, tokens/s and MFU.

Synthetic token shards (uniform random ids, GPT-2's padded vocabulary of 50304) in the tokenize
layout feed the very ``train()`` the pretrain stage runs: the packed-shard loader, AdamW (fused),
warmup + cosine, gradient clipping, bf16 autocast, torch.compile and flash attention through
``scaled_dot_product_attention``. MFU counts 6N + 12 L T d FLOPs per token (PaLM appendix B)
against the GPU's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s). The first logging interval
(compilation) is left out of the medians. llm.c reaches about 40% on this shape.

With ``--nproc N`` or ``--strategy fsdp`` it launches N processes (one per GPU) under torchrun
exactly as the pretrain stage does (pipeline/pretrain/launch.py), DDP or FSDP2; ``--batch-size`` is
per process and MFU is per GPU. ``--smoke`` runs the same path on CPU with a tiny model, gloo
processes and bf16 autocast (and, under FSDP, bf16 gathers with fp32 gradient reduction), so
everything but CUDA, NCCL and torch.compile is exercised without a GPU.

    python benchmarks/gpu_mfu.py [--steps 60] [--batch-size 16] [--no-compile]
    python benchmarks/gpu_mfu.py --strategy fsdp --nproc 8 [--activation-checkpointing]
    python benchmarks/gpu_mfu.py --smoke [--strategy fsdp --nproc 2]   # tiny, on CPU
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dataset import Dataset, Staging, manifest_header
from pipeline.hashing import fingerprint
from pipeline.pretrain.config import PretrainConfig
from pipeline.pretrain.launch import train_distributed
from pipeline.pretrain.train import train

GPT2_124M = {"n_layer": 12, "n_head": 12, "n_embd": 768, "dropout": 0.0, "bias": False, "style": "gpt2"}
SMOKE = {"n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.0, "bias": False, "style": "gpt2"}


def synthetic_tokens(root: Path, rows: int, seq_len: int, vocab: int, seed: int = 0) -> Dataset:
    """Random token rows in the tokenize stage's layout (train and a small val split)."""
    fp = fingerprint(kind="synthetic-tokens", rows=rows, seq_len=seq_len, vocab=vocab, seed=seed)
    st = Staging(root, "tokenize", fp)
    rng = np.random.default_rng(seed)
    ids_type = pa.list_(pa.uint16() if vocab <= 1 << 16 else pa.uint32())
    totals = {}
    for split, n in (("train", rows), ("val", max(8, rows // 64))):
        ids = rng.integers(
            0, vocab, size=(n, seq_len + 1), dtype=np.uint16 if vocab <= 1 << 16 else np.uint32
        )
        table = pa.table({"split": [split] * n, "input_ids": pa.array(list(ids), type=ids_type)})
        pq.write_table(table, st.view("data") / f"{split}-00000-0000.parquet", row_group_size=1024)
        totals[f"sequences_{split}"], totals[f"tokens_{split}"] = n, n * seq_len
    totals.update(docs=0, seq_len=seq_len, vocab_size=vocab, eot_id=vocab - 1, tokenizer_fingerprint=None)
    manifest = {
        **manifest_header("tokenize", fp),
        "totals": totals,
        "counts": {"rows_in": 0, "rows_out": 0, "rows_rejected": 0, "rejected_by_reason": {}},
    }
    return st.publish(manifest, {"data": pa.schema([("split", pa.string()), ("input_ids", ids_type)])})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp", help="data parallelism")
    ap.add_argument("--nproc", type=int, default=1, help="processes under torchrun (one per GPU)")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny model on CPU, a few steps")
    args = ap.parse_args()
    launch = args.nproc > 1 or args.strategy == "fsdp"

    if args.smoke:
        shape, vocab, seq_len, steps, batch, device = SMOKE, 512, 64, 6, 4, "cpu"
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke to check the script on CPU")
        if torch.cuda.device_count() < args.nproc:
            sys.exit(f"--nproc {args.nproc} needs {args.nproc} GPUs; {torch.cuda.device_count()} visible")
        shape, vocab, seq_len, steps, batch, device = (
            GPT2_124M,
            50304,
            args.seq_len,
            args.steps,
            args.batch_size,
            "cuda",
        )
    log_every = max(1, min(10, steps // 4))
    rows = (steps * args.grad_accum + 1) * batch * args.nproc  # one epoch of distinct rows
    root = Path(tempfile.mkdtemp(prefix="tokenmill-mfu-"))
    dataset = synthetic_tokens(root, rows, seq_len, vocab)
    config = PretrainConfig(
        gpt=shape,
        batch_size=batch,
        grad_accum_steps=args.grad_accum,
        max_steps=steps,
        learning_rate=6e-4,
        min_lr=6e-5,
        warmup_steps=min(10, steps // 2),
        log_interval=log_every,
        eval_interval=10 * steps,
        eval_batches=1,
        checkpoint_interval=10 * steps,
        device=device,
        deterministic=False,
        dtype="bfloat16",  # the GPU default, also on CPU for the smoke run
        compile=not args.no_compile and not args.smoke,
        threads=1 if args.smoke else None,
        nproc=args.nproc,
        strategy=args.strategy,
        activation_checkpointing=args.activation_checkpointing,
    )
    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    t0 = time.perf_counter()
    try:
        if launch:
            result = train_distributed(config, dataset, root / "work")
        else:
            result = train(config, dataset, root / "work")
    finally:
        shutil.rmtree(root, ignore_errors=True)  # a 124M checkpoint with optimizer state is ~1.5 GB
    wall = time.perf_counter() - t0
    s = result.summary
    for row in result.metrics:
        if row["split"] == "train":
            mfu = "" if row["mfu"] is None else f" mfu {row['mfu']:.1%}"
            print(f"step {row['step']:4d} loss {row['loss']:.3f} {row['tokens_per_s']:,.0f} tok/s{mfu}")
    mfu = s["mfu"] if s["mfu"] is not None else math.nan
    print(
        f"tokens_per_s={s['tokens_per_s']:.0f} mfu={mfu:.4f} params={s['params']} steps={s['steps']} "
        f"batch_tokens={batch * args.grad_accum * seq_len * args.nproc} device={device} "
        f"compile={config.compile} strategy={args.strategy} nproc={args.nproc} "
        f"activation_checkpointing={args.activation_checkpointing} wall_s={wall:.1f}"
    )


if __name__ == "__main__":
    main()
