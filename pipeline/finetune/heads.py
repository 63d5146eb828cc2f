"""A sequence-classification head on a pretrained decoder.

The decoder reads the token ids (an end-of-text token appended to every text) and returns its
final hidden states; one vector per sequence is pooled from them and a linear layer maps it to
class logits. Sequences are right-padded: with causal attention (or a left-to-right LSTM) padding
after a token cannot change that token's state, so no attention mask is needed. ``last`` pooling
takes the state of the last real token, which has read the whole text; ``mean`` averages the
states of the real tokens. With ``last`` the head is a bias-free linear layer, exactly
transformers' ``…ForSequenceClassification`` score layer, so the classifier exports to it
(pipeline/models/hf.py); the mean-pooling head, which has no transformers equivalent, keeps a bias.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..models import language_model
from ..models.checkpoint import load_model, save_checkpoint

Pooling = Literal["last", "mean"]


def pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(B, T, C) hidden states of right-padded sequences -> (B, C)."""
    if pooling == "last":
        return hidden[torch.arange(hidden.size(0), device=hidden.device), lengths - 1]
    mask = (torch.arange(hidden.size(1), device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
    return (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)


class SequenceClassifier(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        n_classes: int,
        pooling: Pooling = "last",
        dropout: float = 0.1,
        bias: bool | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        bias = pooling != "last" if bias is None else bias
        self.head = nn.Linear(language_model(backbone).config.n_embd, n_classes, bias=bias)
        nn.init.normal_(self.head.weight, std=0.02)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes) for right-padded token ids (B, T) of the given lengths."""
        pooled = pool(language_model(self.backbone).hidden_states(idx), lengths, self.pooling)
        return self.head(self.dropout(pooled))


# -- the fine-tuned checkpoint: the agreed checkpoint format plus the head and what it was tuned for --
HEAD_FILE = "head.safetensors"
META_FILE = "finetune.json"


def save_finetuned(
    directory: str | Path, model: nn.Module, meta: dict, tokenizer_dir: str | Path | None = None
) -> Path:
    """A checkpoint whose backbone any tokenmill reader loads, plus ``head.safetensors`` and ``finetune.json``."""
    backbone = model.backbone if isinstance(model, SequenceClassifier) else model
    out = save_checkpoint(directory, backbone, tokenizer_dir=tokenizer_dir)
    if isinstance(model, SequenceClassifier):
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
            str(out / HEAD_FILE),
        )
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def load_finetuned(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The fine-tuned model (a SequenceClassifier for classify, the LM for instruct) and its meta."""
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    backbone, _ = load_model(directory, device=device)
    if meta["task"] != "classify":
        return backbone, meta
    head = load_file(str(directory / HEAD_FILE), device=str(device))
    model = SequenceClassifier(
        backbone, len(meta["labels"]), meta["pooling"], dropout=0.0, bias="bias" in head
    )
    model.head.load_state_dict(head)
    return model.to(device).eval(), meta
