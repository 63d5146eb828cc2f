"""Language models: a GPT decoder (GPT-2 or Llama style) and an LSTM, behind one small registry.

Every model takes a config dataclass, and has ``forward(idx, targets) -> (logits, loss)``,
``hidden_states(idx) -> (B, T, n_embd)``, ``num_params()`` and ``flops_per_token()``.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, cast

from torch import nn

from .gpt import GPT, GPTConfig
from .lstm import LSTMConfig, LSTMLanguageModel

# arch name -> (config dataclass, model class); the arch is stored in every checkpoint.
ARCHS: dict[str, tuple[type, type[nn.Module]]] = {
    "gpt": (GPTConfig, GPT),
    "lstm": (LSTMConfig, LSTMLanguageModel),
}


def build_model(arch: str, **config: Any) -> nn.Module:
    """A freshly initialised model; unknown config keys are an error, missing ones take defaults."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; known: {sorted(ARCHS)}")
    config_cls, model_cls = ARCHS[arch]
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{arch} config has no fields {unknown}")
    return model_cls(config_cls(**config))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under torch.compile and DistributedDataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = cast(nn.Module, model._orig_mod)
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            return model


def language_model(model: nn.Module) -> GPT | LSTMLanguageModel:
    """``model`` typed as the registered model it is, for its config and methods (a cast only)."""
    return cast("GPT | LSTMLanguageModel", model)


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """``{"arch": ..., **config fields}``: what model_config.json holds."""
    model = unwrap(model)
    for arch, (_, model_cls) in ARCHS.items():
        if isinstance(model, model_cls):
            return {"arch": arch, **asdict(language_model(model).config)}
    raise TypeError(f"{type(model).__name__} is not a registered model")


__all__ = [
    "ARCHS",
    "GPT",
    "GPTConfig",
    "LSTMConfig",
    "LSTMLanguageModel",
    "build_model",
    "language_model",
    "model_config_dict",
    "unwrap",
]
