"""Where a model runs, and the one conversion of a mean token loss into perplexity."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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


# torch's RNG, intra-op thread count and deterministic-algorithms flag are process-global: two
# trainings in one process (threads of one Prefect run, ablation variants) would draw from one
# RNG and reset each other's settings, so they take turns. Process-based engines (Dask, Ray)
# run them side by side.
TORCH_PROCESS_LOCK = threading.RLock()
F = TypeVar("F", bound=Callable[..., Any])


def torch_exclusive(fn: F) -> F:
    """Run ``fn`` holding :data:`TORCH_PROCESS_LOCK` (one training or evaluation per process at a time)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with TORCH_PROCESS_LOCK:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
