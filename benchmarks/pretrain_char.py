"""nanoGPT parity on CPU: the shakespeare_char recipe through the tokenmill pretrain stage.

Character-level tinyshakespeare, first 90% train / last 10% val as in nanoGPT's prepare.py,
packed into the tokenize stage's layout (shuffled rows of seq_len + 1 tokens, row groups of
1024), then trained by ``PretrainStage`` with nanoGPT's CPU shape: n_layer 4, n_head 4, n_embd
128, context 64, batch 12, dropout 0, no biases, lr 1e-3 with 100 warmup steps and cosine decay
to 1e-4 over 2000 iterations, beta2 0.99, weight decay 0.1, gradient clip 1.0, fp32.

nanoGPT draws each training window at any offset of the text. The default here packs rows of
1024 tokens and sets the stage's ``context_len`` to 64, so each row yields a 64-token window
at a seeded random offset (every window of the text lies inside some row): nanoGPT's sampling
through the pipeline's own option. ``--row-len 64 --train-stride 64`` is the plain tokenize
packing instead: fixed windows, each seen at one alignment only.

The peer, in the same run, is nanoGPT's own training loop re-typed around the same model:
random windows at any offset of the in-memory train tokens (``torch.randint``), the batch for
the next step drawn right after the forward pass, ``loss.item()`` every step (its CPU recipe
logs every iteration), no metrics rows, no checkpoints, no deterministic mode. It trains its
own model (same seed, same init) for the same number of iterations, interleaved with the stage:
every ``--peer-chunk`` stage steps, a reporter hook runs the next chunk of peer steps, so both
sides meet the same machine, at the same point of training, throughout the run. Speed on both
sides is the median over blocks of ``LOG_EVERY`` steps; the stage's blocks that contain a peer
chunk are left out of its median.

Validation losses of the trained model: ``val_loss``, what the stage reports, the mean over
every token of its val rows (consecutive 64-token windows; with 1024-token rows the last 947
tokens of the split fill no row); ``val_loss_full``, the same over every token of the val split,
recomputed from the final checkpoint; and ``val_loss_est20``, nanoGPT's ``estimate_loss``: the
mean of 20 random batches of 12 windows, an unbiased but noisy estimate of the same quantity.
nanoGPT's 1.886 is one such estimate; the spread of ten of them on our model is printed. The
peer's model gets the same full-split and estimated losses: the like-for-like reference.

    python benchmarks/pretrain_char.py [--input FILE.txt] [--iters N] [--threads N] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import statistics
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
from pipeline.models.checkpoint import load_model
from pipeline.observe import add_reporter
from pipeline.pretrain.config import PretrainConfig
from pipeline.pretrain.optim import lr_at, make_optimizer
from pipeline.pretrain.stage import PretrainStage
from pipeline.stage import run_stage
from pipeline.tokenize.tokenizer import TextTokenizer, build_char

DEFAULT_INPUT = (
    Path(__file__).resolve().parents[2] / "shared" / "corpora" / "pretrain" / "tinyshakespeare.txt"
)
NANOGPT_MS_PER_ITER = 36.0
NANOGPT_VAL_LOSS = 1.886
BLOCK, BATCH = 64, 12
LR, MIN_LR, WARMUP, DECAY = 1e-3, 1e-4, 100, 2000
LOG_EVERY = 10  # steps per timing block, on both sides
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False, "style": "gpt2"}


def char_splits(text: str) -> tuple[TextTokenizer, dict[str, np.ndarray]]:
    """The character tokenizer and nanoGPT's split: the first 90% of the characters train."""
    tok = build_char([[text]])
    cut = int(len(text) * 0.9)
    parts = {"train": text[:cut], "val": text[cut:]}
    return tok, {k: np.asarray(tok.encode(v), dtype=np.uint16) for k, v in parts.items()}


def pack_char_dataset(
    root: Path, text: str, row_len: int = 1024, train_stride: int | None = None, seed: int = 0
) -> Dataset:
    """tinyshakespeare as a tokenize dataset: rows of ``row_len + 1`` tokens, globally shuffled.

    Val rows start every ``row_len`` tokens (overlapping by one, as the tokenize stage packs), so
    every val token is scored once. Train rows start every ``train_stride`` tokens; the default,
    ``row_len - BLOCK`` (at least 1), puts every BLOCK-token window of the text inside some row.
    """
    train_stride = train_stride or max(row_len - BLOCK, 1)
    tok, ids = char_splits(text)
    fp = fingerprint(
        kind="bench-char", text=sha256_bytes(text.encode()), row_len=row_len, stride=train_stride, seed=seed
    )
    st = Staging(root, "tokenize", fp)
    rng = np.random.default_rng(seed)
    ids_type = pa.list_(pa.uint16())
    totals = {}
    for split, split_ids in ids.items():
        stride = train_stride if split == "train" else row_len
        n_rows = (len(split_ids) - 1 - row_len) // stride + 1
        starts = np.arange(n_rows) * stride
        rows = split_ids[starts[:, None] + np.arange(row_len + 1)][rng.permutation(n_rows)]
        # the list column straight from the 2-D array (no Python list of rows)
        column = pa.ListArray.from_arrays(
            pa.array(np.arange(n_rows + 1, dtype=np.int32) * (row_len + 1)), pa.array(rows.ravel())
        )
        table = pa.table({"split": pa.array([split] * n_rows), "input_ids": column})
        pq.write_table(table, st.view("data") / f"{split}-00000-0000.parquet", row_group_size=1024)
        totals[f"tokens_{split}"], totals[f"sequences_{split}"] = len(split_ids), n_rows
    tok.save(st.dir / "tokenizer")
    totals.update(
        docs=1,
        seq_len=row_len,
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


def random_windows(data: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT's get_batch: BATCH windows at uniformly random offsets, and their next tokens."""
    ix = torch.randint(len(data) - BLOCK, (BATCH,), generator=gen)
    x = torch.stack([data[i : i + BLOCK] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + BLOCK] for i in ix])
    return x, y


class NanoGPTPeer:
    """nanoGPT's CPU training loop around tokenmill's GPT, resumable between calls to ``run``."""

    def __init__(self, train_ids: np.ndarray, vocab_size: int, seed: int):
        torch.manual_seed(seed)
        self.model = build_model("gpt", vocab_size=vocab_size, block_size=BLOCK, **SHAPE)
        self.opt = make_optimizer(self.model, LR, 0.1, (0.9, 0.99), "cpu")
        self.data = torch.from_numpy(train_ids.astype(np.int64))
        self.gen = torch.Generator().manual_seed(seed)
        self.it = 0
        self.x, self.y = random_windows(self.data, self.gen)

    def run(self, iters: int) -> list[float]:
        """Train ``iters`` more steps; the seconds of each ``LOG_EVERY``-step block (but the warm-up one)."""
        fresh = self.it == 0
        blocks, t = [], time.perf_counter()
        deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)  # nanoGPT runs without (the stage turns it on)
        for _ in range(iters):
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.it, LR, MIN_LR, WARMUP, DECAY)
            _, loss = self.model(self.x, self.y)
            self.x, self.y = random_windows(self.data, self.gen)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            loss.item()
            self.it += 1
            if self.it % LOG_EVERY == 0:
                now = time.perf_counter()
                blocks.append(now - t)
                t = now
        torch.use_deterministic_algorithms(deterministic)
        return blocks[1:] if fresh else blocks  # a fresh model's first block holds the warm-up


class Interleave:
    """A reporter that runs the peer's next chunk every ``chunk`` stage steps, inside the stage.

    It also collects the stage's per-block speed, leaving out each block a peer chunk ran in.
    """

    def __init__(self, peer: NanoGPTPeer, chunk: int, total: int):
        self.peer, self.chunk, self.total = peer, chunk, total
        self.peer_blocks: list[float] = []
        self.stage_ms: list[float] = []
        self._polluted = False

    def __call__(self, event: str, data: dict) -> None:
        if data.get("stage") != "pretrain":
            return
        if event == "metrics" and data.get("split") == "train" and data.get("tokens_per_s"):
            if not self._polluted and data["step"] > LOG_EVERY:  # the first block holds the warm-up
                self.stage_ms.append(1000 * BATCH * BLOCK / data["tokens_per_s"])
            self._polluted = False
        elif event == "progress" and data["done"] % self.chunk == 0 and self.peer.it < self.total:
            self.peer_blocks += self.peer.run(min(self.chunk, self.total - self.peer.it))
            self._polluted = True

    def finish(self) -> None:
        """The peer's steps still owed when the stage ends (when iters is not a multiple of chunk)."""
        if self.peer.it < self.total:
            self.peer_blocks += self.peer.run(self.total - self.peer.it)


@torch.no_grad()
def full_split_loss(model: torch.nn.Module, ids: np.ndarray) -> float:
    """Mean cross-entropy over a split in consecutive BLOCK-token windows (all but a last partial one)."""
    data = torch.from_numpy(ids.astype(np.int64))
    n = (len(data) - 1) // BLOCK
    x = data[: n * BLOCK].view(n, BLOCK)
    y = data[1 : n * BLOCK + 1].view(n, BLOCK)
    per_forward = 64  # windows
    total = sum(
        model(x[i : i + per_forward], y[i : i + per_forward])[1].item() * len(x[i : i + per_forward])
        for i in range(0, n, per_forward)
    )
    return total / n


@torch.no_grad()
def nanogpt_estimates(model: torch.nn.Module, ids: np.ndarray, n: int = 10, seed: int = 0) -> list[float]:
    """``n`` independent repetitions of nanoGPT's estimate_loss (20 random batches each)."""
    data = torch.from_numpy(ids.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    return [
        statistics.fmean(model(*random_windows(data, gen))[1].item() for _ in range(20)) for _ in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument(
        "--peer-chunk", type=int, default=100, help="stage steps between chunks of as many peer steps"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=1337, help="the stage's and the peer's seed")
    ap.add_argument(
        "--row-len", type=int, default=1024, help="tokens per packed row (64: one window per row)"
    )
    ap.add_argument(
        "--train-stride",
        type=int,
        default=None,
        help="tokens between train row starts (default: row_len - 64, at least 1: every window lies in a row)",
    )
    ap.add_argument("--root", type=Path, default=None, help="data root (default: a temporary directory)")
    args = ap.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input} not found: pass --input FILE.txt (the shared corpora are optional)")
    if args.peer_chunk < 2 * LOG_EVERY or args.peer_chunk % LOG_EVERY:
        sys.exit(f"--peer-chunk must be a multiple of {LOG_EVERY}, at least {2 * LOG_EVERY}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )

    text = args.input.read_text(encoding="utf-8")
    root = args.root or Path(tempfile.mkdtemp(prefix="tokenmill-bench-"))
    dataset = pack_char_dataset(root, text, args.row_len, args.train_stride)
    _, ids = char_splits(text)
    totals = dataset.manifest["totals"]
    print(
        f"data: vocab {totals['vocab_size']}, train {totals['sequences_train']} rows, val {totals['sequences_val']} rows"
    )

    peer = NanoGPTPeer(ids["train"], totals["vocab_size"], args.seed)
    interleave = Interleave(peer, args.peer_chunk, args.iters)
    remove_reporter = add_reporter(interleave)

    val_rows = totals["sequences_val"]
    config = PretrainConfig(
        arch="gpt",
        gpt=SHAPE,
        context_len=BLOCK,
        batch_size=BATCH,
        grad_accum_steps=1,
        learning_rate=LR,
        min_lr=MIN_LR,
        warmup_steps=WARMUP,
        lr_decay_steps=DECAY,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.99,
        grad_clip=1.0,
        max_steps=args.iters,
        log_interval=LOG_EVERY,
        eval_interval=500,
        eval_batches=-(-val_rows // BATCH),
        checkpoint_interval=500,
        seed=args.seed,
        device="cpu",
        deterministic=True,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    result = run_stage(PretrainStage(), config, root, {"tokenize": dataset})
    interleave.finish()
    remove_reporter()
    wall = time.perf_counter() - t0

    s = result.stats
    ms = statistics.median(interleave.stage_ms)
    tok_s = 1000 * BATCH * BLOCK / ms
    peer_ms = 1000 * statistics.median(interleave.peer_blocks) / LOG_EVERY
    model, _ = load_model(result.path / "checkpoint")
    full = full_split_loss(model, ids["val"])
    est = nanogpt_estimates(model, ids["val"])
    peer.model.eval()
    peer_full = full_split_loss(peer.model, ids["val"])
    peer_est = nanogpt_estimates(peer.model, ids["val"])
    for row in pq.read_table(result.data_path).to_pylist():
        if row["split"] == "val":
            print(f"step {row['step']:5d}  val loss {row['loss']:.4f}")
    print(
        f"tokenmill: {ms:.1f} ms/iter, {tok_s:,.0f} tokens/s, val loss {s['val_loss']:.4f} over the whole val split "
        f"(recomputed from the checkpoint: {full:.4f}; unigram {s['unigram_entropy']:.3f})"
    )
    print(
        f"nanoGPT-style estimates (20 random batches) of the same model: first {est[0]:.4f}, "
        f"mean {statistics.fmean(est):.4f}, sd {statistics.stdev(est):.4f}, range {min(est):.4f}-{max(est):.4f}"
    )
    print(
        f"peer (nanoGPT loop, interleaved): {peer_ms:.1f} ms/iter over {peer.it} steps, val loss {peer_full:.4f} "
        f"over the whole val split (20-batch estimate: first {peer_est[0]:.4f}, mean {statistics.fmean(peer_est):.4f})"
    )
    print(f"stage wall {wall:.0f} s with the peer's chunks inside; output {result.path}")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print(
        f"ms_per_iter={ms:.1f} tokens_per_s={tok_s:.0f} val_loss={s['val_loss']:.4f} "
        f"val_loss_full={full:.4f} val_loss_est20={est[0]:.4f} val_loss_est20_sd={statistics.stdev(est):.4f} iters={s['steps']} "
        f"peer_val_loss_full={peer_full:.4f} peer_val_loss_est20={peer_est[0]:.4f} "
        f"peer_ms_per_iter={peer_ms:.1f} peer_tokens_per_s={1000 * BATCH * BLOCK / peer_ms:.0f} "
        f"speed_vs_peer={peer_ms / ms:.3f} nanogpt_ms_per_iter={NANOGPT_MS_PER_ITER} "
        f"nanogpt_val_loss={NANOGPT_VAL_LOSS} row_len={args.row_len} "
        f"train_stride={args.train_stride or max(args.row_len - BLOCK, 1)} seed={args.seed}"
    )


if __name__ == "__main__":
    main()
