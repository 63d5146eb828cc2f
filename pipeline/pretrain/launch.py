"""Data-parallel pretraining from inside the stage: launch torchrun, wait, read the work dir.

With ``nproc > 1`` (or ``strategy: fsdp``) the pretrain unit runs ``python -m
torch.distributed.run --standalone --nproc-per-node N -m pipeline.pretrain.train TOKENS WORK
CONFIG`` as a subprocess: N processes train one model (gloo on CPU, NCCL on GPU). With DDP rank 0
writes the same resumable checkpoints a single process writes; with FSDP every process writes its
shards and the final checkpoint also holds the whole weights. The launcher then reads the final
checkpoint back into the very :class:`TrainResult` the single-process :func:`train` returns, so
the stage cannot tell them apart, and a retry resumes from the newest checkpoint.

Torchrun is the engine here: one machine (``--standalone``). For several machines, run the same
entry point under torchrun on each node with ``--nnodes`` and a rendezvous endpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ..dataset import Dataset
from ..models.checkpoint import load_model, load_train_state
from ..models.runtime import resolve_device
from .config import PretrainConfig
from .train import TrainResult, latest_checkpoint, summarize

LOG_FILE = "torchrun.log"
ERROR_TAIL_LINES = 30  # of the log, quoted in the error when the processes fail


class DistributedTrainingFailed(RuntimeError):
    """torchrun exited non-zero; the message ends with the last lines its processes wrote.

    Not a TokenmillError on purpose: a crashed process (OOM, a lost node) is worth a retry,
    which resumes from the last checkpoint.
    """


def torchrun_command(config: PretrainConfig, tokens: Path, work_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(config.nproc),
        "-m",
        "pipeline.pretrain.train",
        str(tokens),
        str(work_dir),
        config.model_dump_json(),
    ]


def worker_env(config: PretrainConfig) -> dict[str, str]:
    """The launcher's environment, with this package importable and CPU threads shared out."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    if "OMP_NUM_THREADS" not in env:
        # Without this torchrun pins every process to 1 thread; share the cores out instead.
        per_process = config.threads or max(1, (os.cpu_count() or 1) // config.nproc)
        env["OMP_NUM_THREADS"] = str(per_process)
    return env


def check_devices(config: PretrainConfig) -> None:
    if resolve_device(config.device) == "cuda" and torch.cuda.device_count() < config.nproc:
        raise RuntimeError(
            f"pretrain.nproc={config.nproc} needs one GPU per process; {torch.cuda.device_count()} visible"
        )


def train_distributed(
    config: PretrainConfig, dataset: Dataset, work_dir: str | Path, log_dir: str | Path | None = None
) -> TrainResult:
    """Train ``config.nproc`` processes under torchrun to ``max_steps`` and return the result.

    The processes' output goes to ``log_dir/torchrun.log`` (default: the work dir); on failure the
    last lines of it are in the exception. Resumes, like :func:`train`, from the newest checkpoint.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    check_devices(config)
    resumed_from = latest_checkpoint(work_dir)
    log_path = Path(log_dir or work_dir) / LOG_FILE
    with open(log_path, "ab") as log:
        proc = subprocess.run(
            torchrun_command(config, dataset.path, work_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_env(config),
            check=False,
        )
    if proc.returncode != 0:
        raise DistributedTrainingFailed(
            f"torchrun with {config.nproc} processes exited with status {proc.returncode}; "
            f"last lines of {log_path}:\n{log_tail(log_path)}"
        )
    return read_result(config, work_dir, resumed_from)


def read_result(config: PretrainConfig, work_dir: Path, resumed_from: Path | None) -> TrainResult:
    """The final checkpoint in the work dir as the TrainResult a single-process run returns."""
    final = latest_checkpoint(work_dir)
    if final is None:
        raise DistributedTrainingFailed(f"torchrun exited cleanly but left no checkpoint in {work_dir}")
    state, _ = load_train_state(final)
    if state["step"] != config.max_steps:
        raise DistributedTrainingFailed(
            f"torchrun exited cleanly but the newest checkpoint is step {state['step']}, not {config.max_steps}"
        )
    model, _ = load_model(final)
    summary = summarize(state["metrics"], model, state, resolve_device(config.device), resumed_from)
    return TrainResult(final, state["metrics"], summary)


def log_tail(path: Path, lines: int = ERROR_TAIL_LINES) -> str:
    """The last lines the training processes wrote (torchrun prefixes them ``[rankN]:``).

    torchrun's own report follows them but only says which rank failed, not why; it is quoted
    only when no process wrote anything (it failed to start them).
    """
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 256_000))  # the tail is all we quote; logs can be long
        text = f.read().decode("utf-8", errors="replace").splitlines()
    workers = [line for line in text if line.startswith("[rank")]
    return "\n".join((workers or text)[-lines:])
