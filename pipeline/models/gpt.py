"""A GPT decoder-only language model in one readable file.

Two flavours share every line but the few that differ:
- ``style="gpt2"``: learned absolute positions, LayerNorm, a GELU MLP (GPT-2, nanoGPT);
- ``style="llama"``: rotary position embeddings (RoPE), RMSNorm, a SwiGLU MLP (Llama).
Attention is ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where the
device has them); the token embedding and the LM head share one weight matrix (imported models
may keep them apart, `tie_embeddings: false`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class GPTConfig:
    vocab_size: int = 8192
    block_size: int = 256  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm layers (GPT-2 had them; without is a bit better)
    style: Literal["gpt2", "llama"] = "gpt2"
    rope_theta: float = 10_000.0  # llama style only
    # Shapes that imported Hugging Face models bring along (pipeline/models/hf.py); the defaults
    # are tokenmill's own models.
    n_kv_head: int | None = None  # grouped-query attention: key/value heads (default n_head)
    mlp_hidden: int | None = None  # MLP width (default 4 n_embd, or about 8/3 n_embd for SwiGLU)
    norm_eps: float = 1e-5
    gelu: Literal["exact", "tanh"] = "exact"  # gpt2 style: erf GELU, or GPT-2's tanh approximation
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.kv_heads}")
        if self.style == "llama" and (self.n_embd // self.n_head) % 2:
            raise ValueError("RoPE needs an even head dimension")
        if self.style not in ("gpt2", "llama"):
            raise ValueError(f"unknown style {self.style!r}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def mlp_width(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.style == "llama":
            return 32 * math.ceil(8 * self.n_embd / 3 / 32)
        return 4 * self.n_embd


def make_norm(config: GPTConfig) -> nn.Module:
    if config.style == "llama":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rope_tables(head_dim: int, block_size: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angle for each position and each pair of channels, (T, hd/2)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (even, odd) channel pair of x (B, nh, T, hd) by its position's angle."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_dim = config.n_embd // config.n_head
        self.kv_dim = self.n_kv_head * self.head_dim
        # query, key and value projections for all heads, in one matrix multiply
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.rope = config.style == "llama"

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split([self.n_embd, self.kv_dim, self.kv_dim], dim=2)
        # (B, T, C) -> (B, nh, T, hd): heads become a batch dimension
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_kv_head != self.n_head:  # each key/value head serves a group of query heads
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """GPT-2: Linear -> GELU -> Linear, 4x wide. Llama: SwiGLU, about 8/3 x wide (same parameters)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.style == "llama"
        self.gelu_approximate = "tanh" if config.gelu == "tanh" else "none"
        hidden = config.mlp_width
        if self.swiglu:
            self.c_gate = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)
        else:
            h = F.gelu(self.c_fc(x), approximate=self.gelu_approximate)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).

    With ``activation_checkpointing`` set (a training choice, not part of the config) a block
    keeps only its input for backward and recomputes the rest there: activation memory of one
    block instead of all, for about one more forward pass. The recomputation replays the same
    RNG state (dropout), so the result is bit-identical. The checkpointed region is inside the
    block's ``forward``, so hooks on the block (FSDP's gather and reshard) stay outside it.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)
        self.activation_checkpointing = False

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(self._forward, x, rope, use_reentrant=False)
        return self._forward(x, rope)

    def _forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    rope_cos: torch.Tensor  # llama style: buffers registered in __init__
    rope_sin: torch.Tensor

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                "ln_f": make_norm(config),
            }
        )
        if config.style == "gpt2":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        else:
            # RoPE tables are derived from the config, so they are not saved with the weights
            cos, sin = rope_tables(config.n_embd // config.n_head, config.block_size, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            cast(nn.Embedding, self.transformer.wte).weight = self.lm_head.weight  # weight tying

        self.apply(self._init_weights)
        # GPT-2: residual projections scaled down by sqrt(2 * n_layer), as each layer adds two
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in backward instead of keeping them (see Block)."""
        for block in cast("Iterable[Block]", self.transformer.h):
            block.activation_checkpointing = enabled

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (token ones are the tied head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= cast(nn.Embedding, self.transformer.wpe).weight.numel()
        return n

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, T, n_embd), before the LM head."""
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} > block size {self.config.block_size}")
        x = self.transformer["wte"](idx)
        rope = None
        if self.config.style == "gpt2":
            x = x + self.transformer["wpe"](torch.arange(T, device=idx.device))
        else:
            rope = (self.rope_cos[:T], self.rope_sin[:T])
        x = self.transformer["drop"](x)
        for block in cast(nn.ModuleList, self.transformer.h):
            x = block(x, rope)
        return self.transformer["ln_f"](x)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy loss."""
        logits = self.lm_head(self.hidden_states(idx))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix B."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size
