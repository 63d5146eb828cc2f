"""The fine-tuning loop, shared by classification and instruction tuning, and the pieces it needs.

Examples are held in memory as token-id arrays (labeled sets are small next to a pretraining
corpus: 100k examples of 128 tokens are 100 MB). Batches are drawn by a seeded shuffle per epoch
and right-padded to the longest example in the batch. Validation runs every ``eval_interval``
steps; the weights with the best validation accuracy (classifiers, by default; ties go to the
lower loss) or loss are kept, and training stops early after ``patience`` evaluations without
improvement.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..observe import report
from ..pretrain.optim import lr_at
from ..tokenize.tokenizer import TextTokenizer, load_tokenizer
from .config import FinetuneConfig
from .heads import SequenceClassifier
from .instruct import IGNORE


def open_tokenizer(checkpoint: Path) -> TextTokenizer:
    """The tokenizer a checkpoint was trained with: fine-tuning never brings its own."""
    return load_tokenizer(Path(checkpoint) / "tokenizer")


# -- examples ---------------------------------------------------------------------------------------
@dataclass
class Examples:
    """Tokenized examples of one split: ids, and either class labels or per-token targets."""

    ids: list[np.ndarray]
    labels: np.ndarray | None = None  # classify: (n,) label ids
    targets: list[np.ndarray] | None = None  # instruct: next-token targets, IGNORE where no loss

    def __len__(self) -> int:
        return len(self.ids)


def encode_texts(tok: TextTokenizer, texts: list[str], max_len: int) -> list[np.ndarray]:
    """Each text as at most ``max_len`` ids ending with end-of-text (the pooled position)."""
    out = []
    for ids in tok.encode_batch(texts):
        out.append(np.array(ids[: max_len - 1] + [tok.eot_id], dtype=np.int64))
    return out


def as_language_modelling(ex: Examples) -> Examples:
    """The texts of classification examples as next-token prediction examples (labels unused)."""
    keep = [ids for ids in ex.ids if len(ids) > 1]
    return Examples([ids[:-1] for ids in keep], targets=[ids[1:] for ids in keep])


def collate(
    ex: Examples, idx: np.ndarray, pad_id: int, device: str | torch.device
) -> dict[str, torch.Tensor]:
    lengths = np.array([len(ex.ids[i]) for i in idx])
    x = np.full((len(idx), lengths.max()), pad_id, dtype=np.int64)
    y = np.full_like(x, IGNORE) if ex.targets is not None else None
    for row, i in enumerate(idx):
        x[row, : lengths[row]] = ex.ids[i]
        if y is not None and ex.targets is not None:  # (both or neither)
            y[row, : lengths[row]] = ex.targets[i]
    batch = {"x": torch.from_numpy(x).to(device), "lengths": torch.from_numpy(lengths).to(device)}
    if y is not None:
        batch["y"] = torch.from_numpy(y).to(device)
    if ex.labels is not None:
        batch["labels"] = torch.from_numpy(ex.labels[idx]).to(device)
    return batch


def class_weights(labels: np.ndarray, n_classes: int, spec: str | list[float]) -> torch.Tensor | None:
    """None, 'balanced' (n / (k * count_c), as scikit-learn) or explicit weights per label id."""
    if spec == "none":
        return None
    if isinstance(spec, list):
        if len(spec) != n_classes:
            raise ValueError(f"class_weights has {len(spec)} numbers for {n_classes} labels")
        return torch.tensor(spec, dtype=torch.float32)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


# -- loss and evaluation ------------------------------------------------------------------------------
def batch_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-example predictions or an empty tensor) for either task."""
    if isinstance(model, SequenceClassifier):
        logits = model(batch["x"], batch["lengths"])
        loss = F.cross_entropy(logits.float(), batch["labels"], weight=weight)
        return loss, logits.argmax(-1)
    _, loss = model(batch["x"], batch["y"])
    return loss, torch.empty(0)


@torch.no_grad()
def evaluate(
    model: nn.Module, ex: Examples, pad_id: int, device: str | torch.device, batch_size: int = 64
) -> dict[str, Any]:
    """Mean loss over examples (over response tokens for instruct) and, for classifiers, predictions."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(a) for a in ex.ids], kind="stable")  # similar lengths batch together
    preds = np.zeros(len(ex), dtype=np.int64)
    total, count = 0.0, 0
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        batch = collate(ex, idx, pad_id, device)
        loss, pred = batch_loss(model, batch, None)
        n = len(idx) if ex.targets is None else int((batch["y"] != IGNORE).sum())
        total += float(loss) * n
        count += n
        if pred.numel():
            preds[idx] = pred.cpu().numpy()
    model.train(was_training)
    out: dict[str, Any] = {"loss": total / max(count, 1)}
    if ex.labels is not None:
        out["predictions"] = preds
        out["accuracy"] = float((preds == ex.labels).mean()) if len(ex) else 0.0
    return out


# -- the loop -------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per step logged / evaluation
    best_step: int = 0
    best_val_loss: float = math.inf  # the validation loss of the kept weights
    best_val_accuracy: float | None = None  # and their accuracy (classifiers)
    steps: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0


def param_groups(model: nn.Module, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    """Trainable matrices decay, vectors do not; a classifier head learns at ``head_lr``."""
    head_lr = cfg.head_lr if cfg.head_lr is not None else cfg.lr * 10
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith("head."), p.dim() >= 2), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr_scale": head_lr / cfg.lr if head else 1.0,
        }
        for (head, decay), ps in sorted(groups.items())
    ]


def train(
    model: nn.Module,
    train_ex: Examples,
    val_ex: Examples,
    cfg: FinetuneConfig,
    *,
    pad_id: int,
    device: str | torch.device,
    weight: torch.Tensor | None = None,
    name: str = "model",
    on_eval: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place for up to ``cfg.max_steps`` steps; it ends holding its best weights."""
    model.to(device).train()
    if weight is not None:
        weight = weight.to(device)
    if isinstance(model, SequenceClassifier) and (model.lm_score or cfg.probe_l2 is not None):
        batches = [
            collate(train_ex, np.arange(s, min(s + 64, len(train_ex))), pad_id, device)
            for s in range(0, len(train_ex), 64)
        ]
        model.prepare([(b["x"], b["lengths"], b["labels"]) for b in batches], weight, cfg.probe_l2)
    groups = param_groups(model, cfg)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), foreach=False)
    res = TrainResult(
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in model.parameters()),
    )
    rng = np.random.default_rng(cfg.seed)
    best_state = copy.deepcopy(model.state_dict())
    by_accuracy = cfg.select_on == "accuracy" and train_ex.labels is not None
    best_key: tuple[float, float] = (-math.inf, -math.inf)
    bad_evals, step, t0 = 0, 0, time.perf_counter()
    order, pos = rng.permutation(len(train_ex)), 0
    running, running_n = 0.0, 0
    while step < cfg.max_steps:
        if pos >= len(order):
            order, pos = rng.permutation(len(train_ex)), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        lr = lr_at(step, cfg.lr, cfg.lr / 10, cfg.warmup_steps, cfg.max_steps)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        loss, _ = batch_loss(model, collate(train_ex, idx, pad_id, device), weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        running += float(loss.detach())
        running_n += 1
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            val = evaluate(model, val_ex, pad_id, device)
            row = {
                "model": name,
                "step": step,
                "lr": lr,
                "train_loss": running / running_n,
                "val_loss": val["loss"],
                "val_accuracy": val.get("accuracy"),
            }
            running, running_n = 0.0, 0
            res.history.append(row)
            report("metrics", stage="finetune", **row)
            report("progress", stage=f"finetune.{name}", done=step, total=cfg.max_steps)
            if on_eval:
                on_eval(row)
            key = (val["accuracy"], -val["loss"]) if by_accuracy else (-val["loss"], 0.0)
            if key > best_key:
                best_key, res.best_step, bad_evals = key, step, 0
                res.best_val_loss, res.best_val_accuracy = val["loss"], val.get("accuracy")
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_evals += 1
                if cfg.patience and bad_evals >= cfg.patience:
                    res.stopped_early = True
                    break
    res.steps = step
    res.seconds = time.perf_counter() - t0
    model.load_state_dict(best_state)
    model.eval()
    return res


def adapt_to_domain(
    backbone: nn.Module,
    train_ex: Examples,
    val_ex: Examples,
    cfg: FinetuneConfig,
    *,
    pad_id: int,
    device: str | torch.device,
    name: str = "model",
) -> list[dict[str, Any]]:
    """Language-model ``backbone`` on the texts of the classification examples; its learning curve.

    Domain-adaptive pretraining (ULMFiT's second step): a general-domain model learns the task's
    vocabulary and style from its training texts, labels unused, before the classifier trains.
    Early stopping watches the validation texts' LM loss; the backbone keeps its best weights.
    """
    lm_cfg = cfg.model_copy(update={"max_steps": cfg.adapt_steps, "lr": cfg.adapt_lr})
    result = train(
        backbone,
        as_language_modelling(train_ex),
        as_language_modelling(val_ex),
        lm_cfg,
        pad_id=pad_id,
        device=device,
        name=f"{name}-lm",
    )
    return result.history
