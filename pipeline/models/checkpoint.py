"""The checkpoint format: safetensors weights, a JSON config, and (to resume) the training state.

A checkpoint directory holds:
- ``model.safetensors``   the weights (tied weights stored once);
- ``model_config.json``   ``{"arch": "gpt"|"lstm", ...the model config dataclass's fields}``;
- ``tokenizer/``          the tokenizer the model was trained with (copied from the tokenize dataset);
- ``train_state.json``    step, data position, metrics so far, optimizer param groups (resumable);
- ``train_state.safetensors``  optimizer moments and RNG states (resumable);
- ``sharded/``            instead of the optimizer moments, in checkpoints of FSDP runs: weights and
  optimizer moments as torch.distributed.checkpoint shards, one safetensors file per process
  (pipeline/pretrain/fsdp.py); FSDP writes ``model.safetensors`` only in the final checkpoint.
Nothing is ever unpickled: a checkpoint from elsewhere is data, not code.
Writes are atomic: a checkpoint is written beside its final name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model
from torch import nn

from ..errors import ConfigError
from . import build_model, model_config_dict, unwrap

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"
TOKENIZER_DIR = "tokenizer"
STATE_JSON = "train_state.json"
STATE_TENSORS = "train_state.safetensors"
SHARDED_DIR = "sharded"
_OPT_PREFIX = "optimizer."


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Write a checkpoint to ``directory`` atomically (replacing one already there).

    ``state`` (JSON-able) and ``tensors`` (e.g. RNG states) are the caller's training state;
    with ``optimizer`` its state is stored too, so that :func:`load_train_state` can resume.
    """
    final = Path(directory)
    tmp = staging_dir(final)
    try:
        write_checkpoint(
            tmp, model, optimizer=optimizer, state=state, tensors=tensors, tokenizer_dir=tokenizer_dir
        )
        commit(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def staging_dir(final: str | Path) -> Path:
    """A new empty directory beside ``final`` to write a checkpoint into before :func:`commit`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    return tmp


def write_checkpoint(
    into: Path,
    model: nn.Module,
    *,
    weights: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    tokenizer_dir: str | Path | None = None,
) -> None:
    """The checkpoint's files in ``into``; without ``weights`` only the model's config."""
    model = unwrap(model)
    if weights:
        st_save_model(model, str(into / MODEL_FILE))
    _write_json(into / CONFIG_FILE, model_config_dict(model))
    if tokenizer_dir is not None:
        shutil.copytree(tokenizer_dir, into / TOKENIZER_DIR)
    if state is not None or optimizer is not None or tensors:
        all_tensors = {k: v.detach().cpu().contiguous() for k, v in (tensors or {}).items()}
        state = dict(state or {})
        if optimizer is not None:
            opt_tensors, state["optimizer"] = _flatten_optimizer(optimizer)
            all_tensors.update(opt_tensors)
        save_file(all_tensors, str(into / STATE_TENSORS))
        _write_json(into / STATE_JSON, state)  # last: its presence marks a resumable checkpoint


def commit(tmp: Path, final: str | Path) -> None:
    """Rename a written checkpoint into place, replacing one already there."""
    final = Path(final)
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:6]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def read_model_config(directory: str | Path) -> dict[str, Any]:
    """model_config.json; a missing or unreadable file is a ConfigError naming it."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: missing; {Path(directory)} is not a complete tokenmill checkpoint")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(config, dict) or "arch" not in config:
        raise ConfigError(f"{path}: not a tokenmill model config (no 'arch')")
    return config


def build_from_config(directory: str | Path) -> nn.Module:
    """A freshly initialised model of the shape in a checkpoint's model_config.json."""
    config = read_model_config(directory)
    try:
        return build_model(config.pop("arch"), **config)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{Path(directory) / CONFIG_FILE}: {e}") from e


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """The model stored in a checkpoint directory, in eval mode, and its config dataclass."""
    directory = Path(directory)
    model = build_from_config(directory)
    load_weights(model, directory)
    model.to(device).eval()
    return model, model.config


def load_train_state(
    directory: str | Path, optimizer: torch.optim.Optimizer | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON state and the caller's tensors; restores the optimizer's state when given one."""
    directory = Path(directory)
    state = json.loads((directory / STATE_JSON).read_text())
    tensors = load_file(str(directory / STATE_TENSORS))
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPT_PREFIX)}
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, state["optimizer"]))
    return state, {k: v for k, v in tensors.items() if not k.startswith(_OPT_PREFIX)}


def is_checkpoint(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / MODEL_FILE).is_file() and (d / CONFIG_FILE).is_file()


def is_resumable(directory: str | Path) -> bool:
    """A checkpoint with training state: whole weights, or FSDP's sharded ones."""
    d = Path(directory)
    return (d / STATE_JSON).is_file() and (is_checkpoint(d) or (d / SHARDED_DIR).is_dir())


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as flat named tensors plus JSON (param groups, non-tensor values)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in sd["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{_OPT_PREFIX}{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key[len(_OPT_PREFIX) :].split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_weights(model: nn.Module, directory: str | Path) -> None:
    """Load a checkpoint's weights into an already built model of the same config."""
    model = unwrap(model)
    path = Path(directory) / MODEL_FILE
    check_tensors(path, model.state_dict())
    device = next(model.parameters()).device
    st_load_model(model, str(path), strict=True, device=str(device))


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, from its header alone."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable safetensors file: {e}") from e


def check_tensors(path: str | Path, expected: dict[str, torch.Tensor]) -> None:
    """The file holds every tensor ``expected`` names, in the same shapes (tied ones stored once).

    The error names the file and the first few tensors that are missing, extra or misshapen,
    instead of torch's wall of text.
    """
    shapes = tensor_shapes(path)
    # Tied weights share storage; the file holds one of their names.
    groups: dict[int, list[str]] = {}
    for name, t in expected.items():
        groups.setdefault(t.untyped_storage().data_ptr() if t.numel() else id(t), []).append(name)
    aliases = {n: names for names in groups.values() for n in names}
    problems = [
        f"{k} has shape {list(shapes[k])}, expected {list(v.shape)}"
        for k, v in expected.items()
        if k in shapes and shapes[k] != tuple(v.shape)
    ]
    problems += [f"{k} is missing" for k in expected if not any(a in shapes for a in aliases[k])]
    problems += [f"{k} is not part of the model" for k in shapes if k not in expected]
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise ConfigError(f"{path}: does not match its model config: {'; '.join(problems[:4])}{more}")
