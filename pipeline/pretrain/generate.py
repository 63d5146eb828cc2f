"""Sampling text from a checkpoint: temperature and top-k, seeded, stopping at end-of-text."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..models import language_model
from ..models.checkpoint import TOKENIZER_DIR, load_model
from ..tokenize.tokenizer import load_tokenizer


@torch.no_grad()
def sample(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
) -> torch.Tensor:
    """Extend ``idx`` (1, T) one token at a time; the context is cropped to the model's block size."""
    block_size = language_model(model).config.block_size
    for _ in range(max_new_tokens):
        context = idx[:, -block_size:]
        logits, _ = model(context)
        logits = logits[:, -1, :]
        if temperature <= 0:  # greedy
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None and top_k > 0:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)
        idx = torch.cat((idx, nxt), dim=1)
        if stop_id is not None and int(nxt) == stop_id:
            break
    return idx


def generate(
    checkpoint_dir: str | Path,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 1337,
    device: str = "cpu",
) -> str:
    """The prompt's continuation (the prompt itself not included), sampled from a checkpoint."""
    checkpoint_dir = Path(checkpoint_dir)
    model, _ = load_model(checkpoint_dir, device)
    tokenizer = load_tokenizer(checkpoint_dir / TOKENIZER_DIR)
    # An empty prompt starts a fresh document, as after an end-of-text token in training.
    ids = tokenizer.encode(prompt) if prompt else [tokenizer.eot_id]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = sample(model, idx, max_new_tokens, temperature, top_k, generator, stop_id=tokenizer.eot_id)
    new = out[0, len(ids) :].tolist()
    if new and new[-1] == tokenizer.eot_id:
        new = new[:-1]
    return tokenizer.decode(new)
