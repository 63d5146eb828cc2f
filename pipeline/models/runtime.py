"""Where a model runs, and the one conversion of a mean token loss into perplexity."""

from __future__ import annotations

import math

from ..errors import ConfigError

# exp() of more overflows a float; a loss this high is a broken model, reported as such.
MAX_LOSS_FOR_PERPLEXITY = 700.0


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when available, else cpu; an explicit device must exist."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA device is available")
    return name


def perplexity(mean_loss: float) -> float:
    """exp(mean token cross-entropy in nats)."""
    return float(math.exp(min(mean_loss, MAX_LOSS_FOR_PERPLEXITY)))
