"""An LSTM language model: the recurrent baseline to the GPT decoder.

Embedding -> a stack of LSTM layers -> a projection back to the embedding width -> LayerNorm ->
the LM head, which shares its weight with the embedding. Same interface as the GPT:
``forward(idx, targets) -> (logits, loss)`` and ``hidden_states(idx) -> (B, T, n_embd)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class LSTMConfig:
    vocab_size: int = 8192
    block_size: int = 256  # context used when sampling; training sees sequences of this length
    n_layer: int = 2
    n_embd: int = 128
    n_hidden: int = 512
    dropout: float = 0.0


class LSTMLanguageModel(nn.Module):
    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.n_embd,
            config.n_hidden,
            num_layers=config.n_layer,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
            batch_first=True,
        )
        self.proj = nn.Linear(config.n_hidden, config.n_embd)
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.02)
        self.wte.weight = self.lm_head.weight  # weight tying

    def num_params(self, non_embedding: bool = True) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.wte(idx))
        h, _ = self.lstm(x)
        return self.ln_f(self.proj(self.drop(h)))

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.lm_head(self.hidden_states(idx))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per weight (the recurrence is matrix-vector work too)."""
        return 6.0 * self.num_params()
