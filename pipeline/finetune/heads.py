"""A sequence-classification head on a pretrained decoder.

The decoder reads the token ids (an end-of-text token appended to every text) and returns its
final hidden states; one vector per sequence is pooled from them and a linear layer maps it to
class logits. Sequences are right-padded: with causal attention (or a left-to-right LSTM) padding
after a token cannot change that token's state, so no attention mask is needed. ``last`` pooling
takes the state of the last real token, which has read the whole text; ``mean`` averages the
states of the real tokens.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

Pooling = Literal["last", "mean"]


def pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(B, T, C) hidden states of right-padded sequences -> (B, C)."""
    if pooling == "last":
        return hidden[torch.arange(hidden.size(0), device=hidden.device), lengths - 1]
    mask = (torch.arange(hidden.size(1), device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
    return (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)


class SequenceClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, n_classes: int, pooling: Pooling = "last", dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.n_embd, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes) for right-padded token ids (B, T) of the given lengths."""
        pooled = pool(self.backbone.hidden_states(idx), lengths, self.pooling)
        return self.head(self.dropout(pooled))
