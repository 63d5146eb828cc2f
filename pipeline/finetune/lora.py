"""Low-rank adaptation (LoRA, Hu et al. 2021) of a model's Linear layers.

A frozen weight W gets a trainable update B @ A of rank r, scaled by alpha / r:
``y = x W^T + (alpha / r) * dropout(x) A^T B^T``. B starts at zero, so training starts exactly
from the pretrained model. After training the update can be merged into W, leaving a plain
``nn.Linear`` that loads like any other checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.dropout = nn.Dropout(dropout)
        for p in self.base.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scale

    def merged(self) -> nn.Linear:
        """The base layer with the low-rank update added into its weight."""
        with torch.no_grad():
            self.base.weight += (self.lora_B @ self.lora_A) * self.scale
        for p in self.base.parameters():
            p.requires_grad_(True)
        return self.base


def apply_lora(
    model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float = 0.0
) -> list[str]:
    """Freeze ``model`` and wrap every Linear whose name ends with a target; returns the names.

    Names are matched on their last dotted component (``c_attn`` matches
    ``transformer.h.0.attn.c_attn``). The LM head is never wrapped: its weight is tied to the
    token embedding, and a classifier does not use it.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    wanted = set(targets)
    found = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in wanted and name != "lm_head"
    ]
    if not found:
        raise ValueError(f"no Linear layer named {sorted(wanted)} in {type(model).__name__}")
    for name in found:
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, LoRALinear(getattr(owner, leaf), rank, alpha, dropout))
    return found


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear by its merged Linear, in place; returns how many were merged."""
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, getattr(owner, leaf).merged())
    return len(names)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights: what a LoRA fine-tune adds to its base checkpoint."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_A" in k or ".lora_B" in k}
