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
from typing import TYPE_CHECKING, Literal, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..models import language_model
from ..models.checkpoint import load_model, save_checkpoint

if TYPE_CHECKING:
    from ..models.gpt import GPT
    from ..models.lstm import LSTMLanguageModel

Pooling = Literal["last", "mean"]


def pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(B, T, C) hidden states of right-padded sequences -> (B, C)."""
    if pooling == "last":
        return hidden[torch.arange(hidden.size(0), device=hidden.device), lengths - 1]
    mask = (torch.arange(hidden.size(1), device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
    return (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)


def surprisal(
    lm: GPT | LSTMLanguageModel, hidden: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """(B,) mean next-token log-loss (nats) of each right-padded text under the LM's own head."""
    logits = lm.lm_head(hidden[:, :-1]).float()
    loss = F.cross_entropy(logits.transpose(1, 2), idx[:, 1:], reduction="none")
    mask = (torch.arange(idx.size(1) - 1, device=idx.device)[None, :] < (lengths - 1)[:, None]).to(loss.dtype)
    return (loss * mask).sum(1) / mask.sum(1).clamp(min=1)


class SequenceClassifier(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        n_classes: int,
        pooling: Pooling = "last",
        dropout: float = 0.1,
        bias: bool | None = None,
        lm_score: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.lm_score = lm_score
        self.dropout = nn.Dropout(dropout)
        bias = pooling != "last" if bias is None else bias
        width = language_model(backbone).config.n_embd + (1 if lm_score else 0)
        self.head = nn.Linear(width, n_classes, bias=bias)
        nn.init.normal_(self.head.weight, std=0.02)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)
        # The surprisal enters standardised over the training texts under the starting weights
        # (as any linear model's input): raw nats sit far from zero, where a bias learns too slowly.
        if lm_score:
            self.head.register_buffer("score_shift", torch.zeros(()))
            self.head.register_buffer("score_scale", torch.ones(()))

    def _score(self, which: str) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self.head, f"score_{which}"))

    def _standardised(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self._score("shift")) / self._score("scale")

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes) for right-padded token ids (B, T) of the given lengths."""
        return self.head(self.dropout(self.features(idx, lengths)))

    def features(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What the head reads: the pooled hidden state, and the standardised surprisal with lm_score."""
        lm = language_model(self.backbone)
        hidden = lm.hidden_states(idx)
        pooled = pool(hidden, lengths, self.pooling)
        if self.lm_score:
            # Read, not trained through: a backward through the vocabulary doubles a step's cost.
            with torch.no_grad():
                score = self._standardised(surprisal(lm, hidden.detach(), idx, lengths))
            pooled = torch.cat([pooled, score[:, None].to(pooled.dtype)], dim=1)
        return pooled

    def prepare(
        self,
        batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        weight: torch.Tensor | None,
        probe_l2: float | None,
    ) -> None:
        """Before fine-tuning, one pass of the frozen model over the training (ids, lengths, labels)
        batches: standardise the surprisal over them (lm_score), and with ``probe_l2`` fit the head
        alone on the frozen features, an L2-regularised logistic regression by L-BFGS: the linear
        probe of LP-FT (Kumar et al., 2022), so fine-tuning starts from a head that already uses what
        the features hold instead of moving the body to suit a random head."""
        if not batches or (not self.lm_score and probe_l2 is None):
            return
        was_training = self.training
        self.eval()
        lm = language_model(self.backbone)
        with torch.no_grad():
            pooled, scores = [], []
            for ids, n, _ in batches:
                hidden = lm.hidden_states(ids)
                pooled.append(pool(hidden, n, self.pooling).float())
                if self.lm_score:
                    scores.append(surprisal(lm, hidden, ids, n))
            x = torch.cat(pooled)
            if self.lm_score:
                raw = torch.cat(scores)
                sd = float(raw.std()) if raw.numel() > 1 else 0.0
                self._score("shift").fill_(float(raw.mean()))
                self._score("scale").fill_(sd if sd > 0 else 1.0)
                x = torch.cat([x, self._standardised(raw)[:, None]], dim=1)
            y = torch.cat([labels for _, _, labels in batches])
        if probe_l2 is not None:
            opt = torch.optim.LBFGS(
                list(self.head.parameters()), lr=1.0, max_iter=200, line_search_fn="strong_wolfe"
            )

            def closure() -> torch.Tensor:
                opt.zero_grad()
                penalty = 0.5 * probe_l2 * self.head.weight.pow(2).sum()
                loss = F.cross_entropy(self.head(x), y, weight=weight) + penalty
                loss.backward()
                return loss

            opt.step(closure)
        self.train(was_training)


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
        backbone,
        len(meta["labels"]),
        meta["pooling"],
        dropout=0.0,
        bias="bias" in head,
        lm_score=bool(meta.get("lm_score", False)),
    )
    model.head.load_state_dict(head)
    return model.to(device).eval(), meta
