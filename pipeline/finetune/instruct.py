"""Instruction (prompt -> response) examples for causal-LM fine-tuning, and greedy answers.

An example is ``template.format(prompt=...)`` followed by the response and the end-of-text
token, as one token sequence. The loss is the usual next-token cross-entropy, but only on the
response tokens (and the closing end-of-text): prompt positions get the target -1, which the
models' loss ignores, so the model learns to answer, not to imitate prompts.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models import language_model
from .config import DEFAULT_TEMPLATE

IGNORE = -1


def render(prompt: str, template: str = DEFAULT_TEMPLATE) -> str:
    return template.format(prompt=prompt)


def encode_pair(
    prompt_ids: list[int], response_ids: list[int], eot_id: int, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Input ids and next-token targets (prompt positions = IGNORE) of one example, both length <= max_len.

    When the pair is too long the prompt keeps its end (the part next to the response, which
    holds the response marker) and the response keeps its beginning; each keeps at least half.
    """
    response = list(response_ids) + [eot_id]
    seq_budget = max_len + 1  # a model input of max_len tokens predicts max_len targets
    keep_resp = min(len(response), max(seq_budget - len(prompt_ids), seq_budget // 2))
    keep_prompt = min(len(prompt_ids), seq_budget - keep_resp)
    prompt = prompt_ids[len(prompt_ids) - keep_prompt :]
    full = np.array(prompt + response[:keep_resp], dtype=np.int64)
    targets = full[1:].copy()
    targets[: max(len(prompt) - 1, 0)] = IGNORE
    return full[:-1], targets


@torch.no_grad()
def greedy_answer(
    model: torch.nn.Module, prompt_ids: list[int], eot_id: int, max_new_tokens: int
) -> list[int]:
    """Greedy continuation of a prompt, stopping at end-of-text; the new token ids."""
    model.eval()
    device = next(model.parameters()).device
    block = language_model(model).config.block_size
    ids = torch.tensor([prompt_ids[-block:]], dtype=torch.long, device=device)
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits, _ = model(ids[:, -block:])
        nxt = int(logits[0, -1].argmax())
        if nxt == eot_id:
            break
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], dim=1)
    return out
