"""The pretraining loop: maximum likelihood on packed token sequences, resumable at any checkpoint.

One call to :func:`train` builds the model, resumes from the newest checkpoint in ``work_dir``
when there is one, and trains to ``max_steps``: cross-entropy, AdamW, warmup + cosine, gradient
clipping and accumulation, bf16 autocast (and optionally torch.compile) on GPU, fp32 on CPU.
A checkpoint holds everything the future depends on (weights, optimizer moments, step, data
position, RNG states, metrics so far), so in deterministic mode on CPU a run killed at any point
and resumed ends with the very weights of an uninterrupted run. SIGTERM saves a checkpoint first.
Under torchrun (an initialised process group) it trains data-parallel: with DDP, or with FSDP2
(``strategy: fsdp``, pipeline/pretrain/fsdp.py), whose checkpoints are sharded.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, cast

import torch
import torch.distributed as dist
from torch import nn

from ..dataset import Dataset
from ..errors import ConfigError
from ..models import GPT, build_model, language_model, unwrap
from ..models.checkpoint import (
    SHARDED_DIR,
    is_resumable,
    load_train_state,
    load_weights,
    save_checkpoint,
)
from ..models.runtime import perplexity, resolve_device, torch_exclusive
from ..observe import report
from .config import PretrainConfig
from .data import BatchStream, PackedSequences, validation_batches
from .optim import lr_at, make_optimizer

log = logging.getLogger("tokenmill")

CHECKPOINT_PREFIX = "step-"
# Dense bf16 peak FLOP/s by GPU name, for model FLOPs utilisation (MFU).
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
}


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGTERM after saving a checkpoint; running again resumes from it."""


@dataclass
class TrainResult:
    checkpoint: Path  # the final checkpoint (in the work dir)
    metrics: list[dict[str, Any]]  # every train and val row, from step 0 (resumed runs included)
    summary: dict[str, Any]


def peak_flops(device: str, override: float | None) -> float | None:
    if override:
        return override
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def latest_checkpoint(work_dir: str | Path) -> Path | None:
    """The complete resumable checkpoint with the highest step in ``work_dir``, if any."""
    best: tuple[int, Path] | None = None
    for p in Path(work_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        m = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", p.name)
        if m is None or not is_resumable(p):
            continue
        if best is None or int(m.group(1)) > best[0]:
            best = (int(m.group(1)), p)
    return best[1] if best else None


def _prune(work_dir: Path, keep: int) -> None:
    ckpts = sorted(
        p for p in work_dir.glob(f"{CHECKPOINT_PREFIX}*") if re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", p.name)
    )
    for p in ckpts[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count for the duration of a run (None: leave it)."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def determinism(enabled: bool, device: str) -> Iterator[None]:
    """Deterministic kernels for the duration of a run, restoring the process setting after."""
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        if device == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # On GPU a few kernels (attention backward) have no deterministic version: warn, don't fail.
        torch.use_deterministic_algorithms(True, warn_only=device == "cuda")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


class SigtermFlag:
    """Turns SIGTERM into a flag the loop checks after each step (main thread only).

    Signal handlers can only be installed from the main thread; elsewhere (a Prefect task in a
    worker thread) SIGTERM keeps its default effect and the periodic checkpoints bound the loss.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def rng_tensors(device: str) -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if device == "cuda":
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor], device: str) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if device == "cuda":
        states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if states:
            torch.cuda.set_rng_state_all(states)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    val: PackedSequences,
    batch_size: int,
    max_batches: int,
    device: str,
    autocast,
    context_len: int | None = None,
) -> float:
    """Mean per-token cross-entropy over the first ``max_batches`` validation batches.

    Rows longer than the model's context are scored in consecutive windows of ``context_len``,
    so every token counts once.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    step = context_len or val.seq_len
    for batch in validation_batches(val, batch_size, max_batches):
        batch = batch.to(device)
        for start in range(0, batch.size(1) - 1, step):
            x, y = batch[:, start : start + step], batch[:, start + 1 : start + 1 + step]
            with autocast:
                _, loss = model(x[:, : y.size(1)], y)
            total += loss.item() * y.numel()
            count += y.numel()
    model.train(was_training)
    return total / count


def initial_model(config: PretrainConfig, dataset: Dataset, vocab_size: int, context_len: int) -> nn.Module:
    """The config's model, freshly initialised, or the weights of ``init_from`` to train on."""
    if config.init_from is None:
        return build_model(config.arch, vocab_size=vocab_size, block_size=context_len, **config.model_shape())
    from ..models.hf import load_init
    from ..tokenize.tokenizer import load_tokenizer

    model, tok_path = load_init(config.init_from)
    mcfg = language_model(unwrap(model)).config
    theirs = load_tokenizer(tok_path).fingerprint if tok_path is not None else None
    tok_dir = dataset.path / "tokenizer"
    ours = load_tokenizer(tok_dir).fingerprint if tok_dir.is_dir() else None
    if theirs is None or theirs != ours or mcfg.vocab_size < vocab_size:
        raise ConfigError(
            f"pretrain.init_from {config.init_from}: its vocabulary ({mcfg.vocab_size:,} ids"
            + ("" if tok_path is not None else ", no tokenizer.json beside it")
            + f") is not the tokenize stage's tokenizer ({vocab_size:,} ids); the token ids would mean "
            f"other things. Tokenize with tokenizer: pretrained and tokenizer_path: {config.init_from}"
        )
    block = mcfg.block_size
    if isinstance(unwrap(model), GPT) and context_len > block:  # an LSTM has no position limit
        raise ConfigError(
            f"pretrain.init_from {config.init_from}: the model sees at most {block} tokens; set "
            f"pretrain.context_len (now {context_len}) to {block} or less"
        )
    return model


@torch_exclusive
def train(
    config: PretrainConfig,
    dataset: Dataset | str | Path,
    work_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``config``'s model on a tokenize dataset, checkpointing into (and resuming from) work_dir."""
    dataset = dataset if isinstance(dataset, Dataset) else Dataset(Path(dataset))
    work_dir = Path(work_dir)
    device = resolve_device(config.device)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    train_seqs, val_seqs = PackedSequences(dataset, "train"), PackedSequences(dataset, "val")
    context_len = config.context_len or train_seqs.seq_len
    if context_len > train_seqs.seq_len:
        raise ConfigError(f"context_len {context_len} exceeds the token rows' seq_len {train_seqs.seq_len}")
    use_bf16 = (device == "cuda" and config.dtype != "float32") or config.dtype == "bfloat16"
    fsdp = config.strategy == "fsdp"
    if fsdp and not distributed:
        raise ConfigError(
            "pretrain.strategy=fsdp shards over processes started by torchrun "
            "(the pretrain stage launches it; see pipeline/pretrain/launch.py)"
        )
    ddp = distributed and not fsdp
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    with determinism(config.deterministic, device), cpu_threads(config.threads), SigtermFlag() as sigterm:
        torch.manual_seed(config.seed)
        model = initial_model(config, dataset, train_seqs.vocab_size, context_len).to(device)
        if config.activation_checkpointing:
            cast(GPT, model).set_activation_checkpointing(True)  # arch gpt (PretrainConfig checks)
        if fsdp:
            from .fsdp import load_sharded, save_sharded, shard_model

            shard_model(model, device, use_bf16, compile_blocks=device == "cuda" and config.compile)
        optimizer = make_optimizer(
            model, config.learning_rate, config.weight_decay, (config.beta1, config.beta2), device
        )
        state: dict[str, Any] = {
            "step": 0,
            "metrics": [],
            "elapsed_s": 0.0,
            "tokens": 0,
            "loss_sum": 0.0,
            "loss_count": 0,
        }
        position = None
        resumed_from = latest_checkpoint(work_dir)
        if resumed_from is not None:
            if fsdp:
                load_sharded(resumed_from, model, optimizer)
                saved, tensors = load_train_state(resumed_from)
            elif (resumed_from / SHARDED_DIR).is_dir():
                raise ConfigError(
                    f"{resumed_from} was written by FSDP: resume it with pretrain.strategy=fsdp"
                )
            else:
                load_weights(model, resumed_from)
                saved, tensors = load_train_state(resumed_from, optimizer)
            state.update({k: saved[k] for k in state})
            position = saved["data_position"]
            restore_rng(tensors, device)
            log.info("pretrain: resuming from %s (step %d)", resumed_from, state["step"])
        stream = BatchStream(
            train_seqs, config.batch_size, config.seed, rank, world, position, window=context_len
        )

        raw_model = model
        if device == "cuda" and config.compile and not fsdp:  # (FSDP compiles each block)
            model = cast(nn.Module, torch.compile(model))  # an OptimizedModule
        if ddp:
            model = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[torch.cuda.current_device()] if device == "cuda" else None,
                broadcast_buffers=False,  # the only buffers (RoPE tables) are constants
            )
        model.train()

        flops_per_token = language_model(unwrap(raw_model)).flops_per_token()
        peak = peak_flops(device, config.peak_flops)
        tokens_per_step = config.batch_size * config.grad_accum_steps * context_len * world
        decay_steps = config.lr_decay_steps or config.max_steps
        metrics: list[dict[str, Any]] = state["metrics"]
        step = state["step"]
        loss_sum = torch.tensor(state["loss_sum"], device=device)
        loss_count = state["loss_count"]
        last_grad_norm: torch.Tensor | None = None
        interval_t0, interval_tokens = time.perf_counter(), 0
        last_saved: Path | None = None
        # A checkpoint is collective, so every rank must stop at the same step: a CPU flag (gloo,
        # beside NCCL) agrees on SIGTERM each step without waiting for the GPU.
        stop_group = dist.new_group(backend="gloo") if distributed and dist.get_backend() != "gloo" else None

        def save(step: int) -> Path:
            nonlocal interval_t0
            t = time.perf_counter()
            path = work_dir / f"{CHECKPOINT_PREFIX}{step:07d}"
            interval_loss = loss_sum.clone()
            if distributed:  # every rank's part of the interval's loss, as the next log row averages it
                dist.all_reduce(interval_loss, op=dist.ReduceOp.SUM)
                interval_loss /= world
            state_out = {
                **state,
                "step": step,
                "metrics": metrics,
                "loss_sum": float(interval_loss.item()),
                "loss_count": loss_count,
                "data_position": stream.position(),
                "config": config.model_dump(mode="json"),
            }
            if fsdp:
                save_sharded(
                    path,
                    model,
                    optimizer,
                    whole_weights=step == config.max_steps,  # the file the pipeline reads, once
                    state=state_out,
                    tensors=rng_tensors(device),
                    tokenizer_dir=tokenizer_dir,
                )
                if rank == 0:
                    _prune(work_dir, config.keep_checkpoints)
            elif rank == 0:
                save_checkpoint(
                    path,
                    raw_model,
                    optimizer=optimizer,
                    state=state_out,
                    tensors=rng_tensors(device),
                    tokenizer_dir=tokenizer_dir,
                )
                _prune(work_dir, config.keep_checkpoints)
            if distributed:
                dist.barrier()
            interval_t0 += time.perf_counter() - t  # checkpoint time is not training time
            return path

        def eval_row(step: int) -> None:
            nonlocal interval_t0
            t = time.perf_counter()
            if val_seqs.num_rows:
                val_loss = evaluate(
                    model, val_seqs, config.batch_size, config.eval_batches, device, autocast, context_len
                )
                metrics.append(
                    _row(
                        step,
                        "val",
                        val_loss,
                        lr_at(step, config.learning_rate, config.min_lr, config.warmup_steps, decay_steps),
                        state["tokens"],
                    )
                )
                report(
                    "metrics",
                    stage="pretrain",
                    step=step,
                    split="val",
                    val_loss=val_loss,
                    perplexity=perplexity(val_loss),
                )
                log.info(
                    "pretrain: step %d val loss %.4f (perplexity %.1f)", step, val_loss, perplexity(val_loss)
                )
            interval_t0 += time.perf_counter() - t

        if step == 0 and not metrics:
            eval_row(0)
        while step < config.max_steps:
            lr = lr_at(step, config.learning_rate, config.min_lr, config.warmup_steps, decay_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for micro in range(config.grad_accum_steps):
                batch = stream.next_batch()
                if device == "cuda":  # pinned: the copy overlaps the GPU's work instead of waiting for it
                    batch = batch.pin_memory().to(device, non_blocking=True)
                # DDP: all-reduce gradients only on the last micro-batch of the step. FSDP
                # reduce-scatters after each one, so that gradients stay sharded.
                sync = not ddp or micro == config.grad_accum_steps - 1
                with nullcontext() if sync else cast(nn.parallel.DistributedDataParallel, model).no_sync():
                    with autocast:
                        _, loss = model(batch[:, :-1], batch[:, 1:])
                        loss = loss / config.grad_accum_steps
                    loss.backward()
                loss_sum += loss.detach()
            if config.grad_clip > 0:
                last_grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_count += 1
            interval_tokens += tokens_per_step
            state["tokens"] += tokens_per_step

            if step % config.log_interval == 0 or step == config.max_steps:
                if distributed:  # (gloo has no AVG)
                    dist.all_reduce(loss_sum, op=dist.ReduceOp.SUM)
                    loss_sum /= world
                train_loss = float(loss_sum.item()) / loss_count  # .item() waits for the GPU: timing is true
                seconds = time.perf_counter() - interval_t0
                state["elapsed_s"] += seconds
                tok_s = interval_tokens / seconds if seconds > 0 else None
                mfu = flops_per_token * tok_s / (peak * world) if peak and tok_s else None
                gn = float(last_grad_norm) if last_grad_norm is not None else None
                metrics.append(
                    _row(step, "train", train_loss, lr, state["tokens"], tok_s, mfu, gn, state["elapsed_s"])
                )
                report(
                    "metrics",
                    stage="pretrain",
                    step=step,
                    split="train",
                    loss=train_loss,
                    lr=lr,
                    tokens_per_s=tok_s,
                    mfu=mfu,
                    grad_norm=gn,
                )
                loss_sum.zero_()
                loss_count = 0
                interval_t0, interval_tokens = time.perf_counter(), 0
            if step % config.eval_interval == 0 or step == config.max_steps:
                eval_row(step)
            report("progress", stage="pretrain", done=step, total=config.max_steps)
            stop = sigterm.requested
            if distributed:
                flag = torch.tensor([int(stop)])
                dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=stop_group)
                stop = bool(flag.item())
            if step % config.checkpoint_interval == 0 or step == config.max_steps or stop:
                last_saved = save(step)
            if stop:
                raise TrainingInterrupted(f"SIGTERM at step {step}; checkpoint saved in {last_saved}")

        final = last_saved or latest_checkpoint(work_dir) or save(step)  # max_steps 0: the imported model
    return TrainResult(final, metrics, summarize(metrics, unwrap(raw_model), state, device, resumed_from))


def _row(
    step: int,
    split: str,
    loss: float,
    lr: float,
    tokens: int,
    tokens_per_s: float | None = None,
    mfu: float | None = None,
    grad_norm: float | None = None,
    elapsed_s: float | None = None,
) -> dict[str, Any]:
    return {
        "step": step,
        "split": split,
        "loss": loss,
        "perplexity": perplexity(loss),
        "lr": lr,
        "tokens": tokens,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "grad_norm": grad_norm,
        "elapsed_s": elapsed_s,
    }


def summarize(
    metrics: list[dict[str, Any]],
    model: nn.Module,
    state: dict[str, Any],
    device: str,
    resumed_from: Path | None,
) -> dict[str, Any]:
    train_rows = [m for m in metrics if m["split"] == "train"]
    val_rows = [m for m in metrics if m["split"] == "val"]
    speeds = [m["tokens_per_s"] for m in train_rows[1:] if m["tokens_per_s"]]  # the first includes warmup
    mfus = [m["mfu"] for m in train_rows[1:] if m["mfu"] is not None]
    return {
        "params": language_model(model).num_params(),
        "device": device,
        "steps": train_rows[-1]["step"] if train_rows else 0,
        "tokens": state["tokens"],
        "train_loss": train_rows[-1]["loss"] if train_rows else None,
        "val_loss": val_rows[-1]["loss"] if val_rows else None,
        "val_perplexity": val_rows[-1]["perplexity"] if val_rows else None,
        "initial_val_loss": val_rows[0]["loss"] if val_rows else None,
        "tokens_per_s": sorted(speeds)[len(speeds) // 2] if speeds else None,  # median
        "mfu": sorted(mfus)[len(mfus) // 2] if mfus else None,
        "train_seconds": state["elapsed_s"],
        "resumed_from_step": int(resumed_from.name[len(CHECKPOINT_PREFIX) :]) if resumed_from else None,
    }


def main(argv: list[str] | None = None) -> None:
    """Data-parallel training under torchrun, one process per device (gloo on CPU, NCCL on GPU)::

        torchrun --nproc-per-node 2 -m pipeline.pretrain.train TOKENS_DIR WORK_DIR [CONFIG_JSON]

    Every process reads the same seeded stream of global batches and trains on its slice. With
    DDP rank 0 writes the checkpoints (the ones a single-process run would resume from, and vice
    versa); with FSDP (``"strategy": "fsdp"``) every process writes its shards.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pipeline.pretrain.train", description=main.__doc__)
    ap.add_argument("tokens", type=Path, help="a published tokenize dataset")
    ap.add_argument("work_dir", type=Path)
    ap.add_argument("config", nargs="?", default="{}", help="PretrainConfig as JSON")
    args = ap.parse_args(argv)
    config = PretrainConfig.model_validate_json(args.config)
    device = resolve_device(config.device)
    dist.init_process_group(
        config.backend if config.backend != "auto" else "nccl" if device == "cuda" else "gloo"
    )
    try:
        tokenizer_dir = args.tokens / "tokenizer"
        train(config, args.tokens, args.work_dir, tokenizer_dir if tokenizer_dir.is_dir() else None)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
