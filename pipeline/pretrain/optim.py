"""AdamW with decoupled weight decay on matrices only, and the warmup + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def make_optimizer(
    model: nn.Module, learning_rate: float, weight_decay: float, betas: tuple[float, float], device_type: str
) -> torch.optim.AdamW:
    """Matrices (weights of Linear, Embedding, LSTM) decay; vectors (norms, biases) do not.

    Tied weights appear once in ``named_parameters``, so every parameter lands in one group.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused CUDA kernel is one launch per step instead of one per tensor.
    fused = {"fused": True} if device_type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **fused)


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup from ~0 to max_lr, then cosine decay to min_lr at ``decay_steps``, then flat."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
