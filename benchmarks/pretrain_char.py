"""nanoGPT parity on CPU: the shakespeare_char recipe through the tokenmill pretrain stage.

Character-level tinyshakespeare, first 90% train / last 10% val as in nanoGPT's prepare.py,
packed into the tokenize stage's layout (rows of block_size + 1 tokens, row groups of 1024),
then trained by ``PretrainStage`` with nanoGPT's CPU shape: n_layer 4, n_head 4, n_embd 128,
block 64, batch 12, dropout 0, no biases, lr 1e-3 with 100 warmup steps and cosine decay to
1e-4 over 2000 iterations, beta2 0.99, weight decay 0.1, gradient clip 1.0, fp32.

Side by side in the same run, a bare loop (same model, nanoGPT's random-window get_batch from an
in-memory array, no metrics, no checkpoints) gives this machine's speed without the pipeline;
nanoGPT's own figures (36 ms/iter, val loss 1.886 at 2000 on a 2-core machine) are printed for
reference. The validation loss here is over the whole val split (nanoGPT: 20 random batches).

    python benchmarks/pretrain_char.py [--input FILE.txt] [--iters N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
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
from pipeline.hashing import fingerprint, sha256_bytes
from pipeline.models import build_model
from pipeline.pretrain.config import PretrainConfig
from pipeline.pretrain.optim import lr_at, make_optimizer
from pipeline.pretrain.stage import PretrainStage
from pipeline.stage import run_stage
from pipeline.tokenize.tokenizer import build_char

DEFAULT_INPUT = (
    Path(__file__).resolve().parents[2] / "shared" / "corpora" / "pretrain" / "tinyshakespeare.txt"
)
NANOGPT_MS_PER_ITER = 36.0
NANOGPT_VAL_LOSS = 1.886
BLOCK, BATCH = 64, 12
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False, "style": "gpt2"}


def pack_char_dataset(root: Path, text: str, train_stride: int = BLOCK, seed: int = 0) -> Dataset:
    """tinyshakespeare as a tokenize dataset: 90/10 split by position, rows of BLOCK + 1 tokens.

    Val rows start every BLOCK tokens (overlapping by one, as the tokenize stage packs), so every
    val token is scored once. Train rows start every ``train_stride`` tokens: nanoGPT samples
    windows at any offset, and a stride below BLOCK gives the loader that same variety.
    """
    tok = build_char([[text]])
    n = len(text)
    splits = {"train": text[: int(n * 0.9)], "val": text[int(n * 0.9) :]}
    fp = fingerprint(
        kind="bench-char", text=sha256_bytes(text.encode()), block=BLOCK, stride=train_stride, seed=seed
    )
    st = Staging(root, "tokenize", fp)
    rng = np.random.default_rng(seed)
    ids_type = pa.list_(pa.uint16())
    totals = {}
    for split, part in splits.items():
        ids = np.asarray(tok.encode(part), dtype=np.uint16)
        stride = train_stride if split == "train" else BLOCK
        n_rows = (len(ids) - 1 - BLOCK) // stride + 1
        starts = np.arange(n_rows) * stride
        rows = ids[starts[:, None] + np.arange(BLOCK + 1)][rng.permutation(n_rows)]
        table = pa.table({"split": [split] * n_rows, "input_ids": pa.array(list(rows), type=ids_type)})
        pq.write_table(table, st.view("data") / f"{split}-00000-0000.parquet", row_group_size=1024)
        totals[f"tokens_{split}"], totals[f"sequences_{split}"] = len(ids), n_rows
    tok.save(st.dir / "tokenizer")
    totals.update(
        docs=1,
        seq_len=BLOCK,
        vocab_size=tok.vocab_size,
        eot_id=tok.eot_id,
        tokenizer_fingerprint=tok.fingerprint,
    )
    manifest = {
        **manifest_header("tokenize", fp),
        "totals": totals,
        "counts": {"rows_in": 1, "rows_out": 1, "rows_rejected": 0, "rejected_by_reason": {}},
    }
    return st.publish(manifest, {"data": pa.schema([("split", pa.string()), ("input_ids", ids_type)])})


def bare_loop_ms_per_iter(dataset: Dataset, iters: int) -> float:
    """ms/iter of the same model and optimiser with nanoGPT's in-memory random-window batches."""
    train = np.concatenate(
        [
            pq.read_table(p).column("input_ids").combine_chunks().flatten().to_numpy()
            for p in dataset.shard_paths()
            if p.name.startswith("train-")
        ]
    ).astype(np.int64)
    torch.manual_seed(0)
    vocab = dataset.manifest["totals"]["vocab_size"]
    model = build_model("gpt", vocab_size=vocab, block_size=BLOCK, **SHAPE)
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), "cpu")
    gen = torch.Generator().manual_seed(0)
    data = torch.from_numpy(train)
    times = []
    for it in range(iters):
        t = time.perf_counter()
        ix = torch.randint(len(data) - BLOCK - 1, (BATCH,), generator=gen)
        x = torch.stack([data[i : i + BLOCK] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + BLOCK] for i in ix])
        for g in opt.param_groups:
            g["lr"] = lr_at(it, 1e-3, 1e-4, 100, 2000)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times[10:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--bare-iters", type=int, default=200, help="iterations of the bare side-by-side loop")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--train-stride",
        type=int,
        default=8,
        help="tokens between train row starts (64: the tokenize stage's packing; less: nanoGPT's any-offset windows)",
    )
    ap.add_argument("--root", type=Path, default=None, help="data root (default: a temporary directory)")
    args = ap.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input} not found: pass --input FILE.txt (the shared corpora are optional)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )

    root = args.root or Path(tempfile.mkdtemp(prefix="tokenmill-bench-"))
    dataset = pack_char_dataset(root, args.input.read_text(encoding="utf-8"), args.train_stride)
    totals = dataset.manifest["totals"]
    print(
        f"data: vocab {totals['vocab_size']}, train {totals['sequences_train']} rows, val {totals['sequences_val']} rows"
    )

    bare_ms = bare_loop_ms_per_iter(dataset, args.bare_iters)
    print(f"bare loop: {bare_ms:.1f} ms/iter (median of {args.bare_iters})")

    val_rows = totals["sequences_val"]
    config = PretrainConfig(
        arch="gpt",
        gpt=SHAPE,
        batch_size=BATCH,
        grad_accum_steps=1,
        learning_rate=1e-3,
        min_lr=1e-4,
        warmup_steps=100,
        lr_decay_steps=2000,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.99,
        grad_clip=1.0,
        max_steps=args.iters,
        log_interval=50,
        eval_interval=500,
        eval_batches=-(-val_rows // BATCH),
        checkpoint_interval=500,
        seed=1337,
        device="cpu",
        deterministic=True,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    result = run_stage(PretrainStage(), config, root, {"tokenize": dataset})
    wall = time.perf_counter() - t0
    s = result.stats
    ms = 1000 * s["train_seconds"] / s["steps"]
    tok_s = s["tokens"] / s["train_seconds"]
    for row in pq.read_table(result.data_path).to_pylist():
        if row["split"] == "val":
            print(f"step {row['step']:5d}  val loss {row['loss']:.4f}")
    print(
        f"tokenmill: {ms:.1f} ms/iter, {tok_s:,.0f} tokens/s, val loss {s['val_loss']:.4f} "
        f"(unigram {s['unigram_entropy']:.3f}), stage wall {wall:.0f} s, output {result.path}"
    )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print(
        f"ms_per_iter={ms:.1f} tokens_per_s={tok_s:.0f} val_loss={s['val_loss']:.4f} iters={s['steps']} "
        f"bare_ms_per_iter={bare_ms:.1f} overhead_ratio={ms / bare_ms:.3f} "
        f"nanogpt_ms_per_iter={NANOGPT_MS_PER_ITER} speed_vs_nanogpt={NANOGPT_MS_PER_ITER / ms:.3f} "
        f"nanogpt_val_loss={NANOGPT_VAL_LOSS} train_stride={args.train_stride}"
    )


if __name__ == "__main__":
    main()
