"""Fully sharded data parallel training (FSDP2) and its sharded checkpoints.

``pretrain.strategy: fsdp`` applies ``torch.distributed.fsdp.fully_shard`` to every transformer
block and then to the whole GPT (the embeddings, tied LM head and final norm form the root's
group). Each process then holds 1/N of the weights, gradients and AdamW moments; a block's
weights are all-gathered just before its forward and backward and freed after. Under bf16 the
gathers carry bf16 weights and gradients are reduce-scattered in fp32.

Checkpoints are sharded: each process writes its own shards with ``torch.distributed.checkpoint``
(DCP) through its safetensors storage, so nothing is pickled (DCP's default format pickles its
index file and unpickles it on load). The final checkpoint also holds the whole weights as
``model.safetensors``, the file the rest of the pipeline reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from ..models import GPT, build_model, model_config_dict
from ..models.checkpoint import SHARDED_DIR, commit, staging_dir, write_checkpoint


def shard_model(model: nn.Module, device: str, bf16: bool, compile_blocks: bool = False) -> None:
    """Shard ``model`` (in place) over every process of the default group, block by block."""
    if not isinstance(model, GPT):
        raise TypeError(f"FSDP shards a GPT's transformer blocks, not a {type(model).__name__}")
    mesh = init_device_mesh(device, (dist.get_world_size(),))
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else MixedPrecisionPolicy()
    )
    blocks: list[nn.Module] = list(model.transformer.h)  # type: ignore[arg-type]
    for i, block in enumerate(blocks):
        if compile_blocks:
            block.compile()  # in place: the state-dict names stay those of the plain model
        # The last block's weights are needed again at once by backward: keep them gathered.
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=i < len(blocks) - 1)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def save_sharded(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    whole_weights: bool,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Every process writes its shards; rank 0 adds the rest and renames the checkpoint into place.

    A collective: every process calls it. ``whole_weights`` also gathers the weights into rank 0's
    CPU memory (4 bytes per parameter) and writes them as ``model.safetensors``. ``state`` and
    ``tensors`` are rank 0's training state, as for :func:`~pipeline.models.checkpoint.save_checkpoint`.
    """
    rank = dist.get_rank()
    box: list[Any] = [staging_dir(directory) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    tmp: Path = box[0]
    try:
        dcp.save(
            _shardable(model, optimizer),
            storage_writer=HuggingFaceStorageWriter(str(tmp / SHARDED_DIR), save_distributed=True),
        )
        whole = (
            get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if whole_weights
            else None
        )
        if rank == 0:
            write_checkpoint(
                tmp,
                _plain_model(model, whole) if whole is not None else model,
                weights=whole is not None,
                state=state,
                tensors=tensors,
                tokenizer_dir=tokenizer_dir,
            )
            commit(tmp, directory)
    except BaseException:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    dist.barrier()
    return directory


def load_sharded(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a sharded checkpoint's weights and optimizer moments into a sharded model (a collective)."""
    sharded = Path(directory) / SHARDED_DIR
    if not sharded.is_dir():
        raise ValueError(
            f"{directory} has no {SHARDED_DIR}/ (not written by FSDP): resume it with pretrain.strategy=ddp"
        )
    target = _shardable(model, optimizer)
    dcp.load(target, storage_reader=HuggingFaceStorageReader(str(sharded)))
    weights = dict(target["model"])
    for alias, name in tied_aliases(model).items():
        weights[alias] = weights[name]
    set_model_state_dict(model, weights)
    groups = get_optimizer_state_dict(model, optimizer)["param_groups"]
    set_optimizer_state_dict(model, optimizer, {"state": target["optimizer"], "param_groups": groups})


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """Second names of shared parameters -> their first name (GPT: lm_head.weight -> wte)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


def _shardable(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What a sharded checkpoint holds: tensors only, each parameter once.

    The optimizer's param groups (learning rate, betas, decay) are left out: they come from the
    config, and the loop sets the learning rate every step. safetensors refuses a tensor stored
    twice, hence no tied alias.
    """
    weights = get_model_state_dict(model)
    for alias in tied_aliases(model):
        weights.pop(alias, None)
    return {"model": weights, "optimizer": get_optimizer_state_dict(model, optimizer)["state"]}


def _plain_model(sharded: nn.Module, whole: dict[str, Any]) -> nn.Module:
    """An unsharded model around the gathered weights (no copy), to save as one file."""
    config = model_config_dict(sharded)
    with torch.device("meta"), torch.random.fork_rng(devices=[]):  # allocates nothing, draws nothing
        plain = build_model(config.pop("arch"), **config)
    plain.load_state_dict(whole, assign=True)
    for alias, name in tied_aliases(sharded).items():  # assigning broke the ties: restore them
        module, _, attr = alias.rpartition(".")
        setattr(plain.get_submodule(module), attr, plain.get_parameter(name))
    return plain
