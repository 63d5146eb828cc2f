"""The fine-tune stage: a pretrained checkpoint + a labeled dataset in, a fine-tuned model out.

Two units of work, which an engine may run side by side:
- ``finetuned``: the pretrained checkpoint with a classification head (or, for instruct, the LM
  itself), fully fine-tuned or through LoRA adapters;
- ``scratch``: the same-budget baseline: the same architecture and head, randomly initialised,
  trained on the same examples with the same steps, batch size, schedule and early stopping
  (every weight trains: low-rank adapters on random weights would not be a fair baseline).
Each writes a checkpoint into the version directory (``checkpoint/`` and ``baseline/``; the
tokenizer always comes from the pretrained checkpoint) and its learning curve into the data
view. The test split is not touched here; the evaluate stage measures it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..dataset import DATA_VIEW, Dataset
from ..errors import ConfigError
from ..models import build_model
from ..models.checkpoint import is_checkpoint, load_model, read_model_config
from ..models.runtime import resolve_device, torch_exclusive
from ..stage import Phase, Stage, StageContext
from .config import FinetuneConfig
from .heads import SequenceClassifier, save_finetuned
from .instruct import encode_pair, render
from .lora import apply_lora, lora_state_dict, merge_lora
from .train import (
    Examples,
    adapt_to_domain,
    class_weights,
    encode_texts,
    open_tokenizer,
    train,
)

CHECKPOINT = "checkpoint"  # the fine-tuned model, beside the views
BASELINE = "baseline"  # the same architecture trained from scratch
MODELS = {"finetuned": CHECKPOINT, "scratch": BASELINE}
HF_DIR = "hf"  # the fine-tuned model as a transformers directory, with export_hf

METRICS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),  # "finetuned" | "scratch"
        pa.field("step", pa.int64(), nullable=False),
        pa.field("lr", pa.float64()),
        pa.field("train_loss", pa.float64()),
        pa.field("val_loss", pa.float64()),
        pa.field("val_accuracy", pa.float64()),
    ]
)


class FinetuneStage(Stage):
    name = "finetune"
    inputs = ("pretrain", "labeled")
    config_model = FinetuneConfig
    description = "Fine-tune the pretrained checkpoint on the labeled task, and a from-scratch baseline."
    schedule = "training"
    version = "2"  # 2: the last-token head has no bias (transformers' score layer)
    data_schema = METRICS_SCHEMA
    rows_out_is_data_rows = False  # the data view holds learning curves; rows count examples

    def phases(self) -> list[Phase]:
        return [Phase("train", plan_units, train_unit)]

    def prepare(self, ctx: StageContext) -> None:
        pretrained = pretrained_checkpoint(ctx.input("pretrain"))
        labeled = ctx.input("labeled")
        cfg: FinetuneConfig = ctx.config
        task = labeled.manifest["stats"].get("task")
        if task != cfg.task:
            raise ConfigError(f"finetune.task is {cfg.task!r} but the labeled dataset holds {task!r} data")
        if cfg.export_hf and read_model_config(pretrained)["arch"] != "gpt":
            raise ConfigError(
                "finetune.export_hf: the pretrained model is an LSTM, which has no transformers equivalent"
            )
        ctx.extra["pretrained"] = str(pretrained)

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        from .plots import plot_curves

        by_model = {r["model"]: r for r in results}
        rows = [row for r in results for row in r["history"]]
        curves = plot_curves(rows, ctx.staging_dir / "curves.png", title=f"fine-tune ({ctx.config.task})")
        n = by_model["finetuned"]["examples"]
        counts = {"rows_in": n, "rows_out": n, "rows_rejected": 0, "rejected_by_reason": {}}
        stats = {
            "task": ctx.config.task,
            "method": ctx.config.method,
            "models": {k: {x: v for x, v in r.items() if x != "history"} for k, r in by_model.items()},
            "curves": curves.name if curves else None,
            "hf": HF_DIR if ctx.config.export_hf else None,
            "pretrained_checkpoint": str(Path(ctx.extra["pretrained"]).relative_to(ctx.root)),
        }
        return {
            "counts": counts,
            "stats": stats,
            "totals": {"train_examples": by_model["finetuned"]["train"]},
        }


def pretrained_checkpoint(pretrain: Dataset) -> Path:
    ckpt = pretrain.path / CHECKPOINT
    if not is_checkpoint(ckpt):
        raise ConfigError(f"{pretrain.path}: the pretrain dataset holds no {CHECKPOINT}/")
    return ckpt


def plan_units(ctx: StageContext, _: list[Any]) -> list[str]:
    return ["finetuned", "scratch"] if ctx.config.baseline else ["finetuned"]


def load_split_rows(labeled: Dataset, split: str) -> dict[str, list[Any]]:
    """The columns fine-tuning needs, for one split, in the dataset's (deterministic) order."""
    out: dict[str, list[Any]] = {"text": [], "label_id": [], "response": []}
    for batch in labeled.iter_batches(columns=["text", "label_id", "response", "split"]):
        t = pa.Table.from_batches([batch])
        t = t.filter(pc.equal(t["split"], split))
        for k, values in out.items():
            values.extend(t[k].to_pylist())
    return out


def build_examples(rows: dict[str, list[Any]], tok, cfg: FinetuneConfig, max_len: int) -> Examples:
    if cfg.task == "classify":
        return Examples(
            encode_texts(tok, rows["text"], max_len), labels=np.array(rows["label_id"], dtype=np.int64)
        )
    prompts = tok.encode_batch([render(p, cfg.template) for p in rows["text"]])
    responses = tok.encode_batch(rows["response"])
    pairs = [encode_pair(p, r, tok.eot_id, max_len) for p, r in zip(prompts, responses, strict=True)]
    return Examples([x for x, _ in pairs], targets=[y for _, y in pairs])


@torch_exclusive
def train_unit(ctx: StageContext, which: str) -> dict[str, Any]:
    """Train one model (``finetuned`` or ``scratch``), save its checkpoint and learning curve."""
    cfg: FinetuneConfig = ctx.config
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    pretrained = Path(ctx.extra["pretrained"])
    labeled = ctx.input("labeled")
    labels = [x["label"] for x in sorted(labeled.manifest["stats"]["labels"], key=lambda x: x["id"])]
    tok = open_tokenizer(pretrained)
    arch = read_model_config(pretrained)
    max_len = min(cfg.max_len, arch["block_size"])
    train_ex = build_examples(load_split_rows(labeled, "train"), tok, cfg, max_len)
    val_ex = build_examples(load_split_rows(labeled, "validation"), tok, cfg, max_len)
    if not len(train_ex):
        raise ConfigError(f"{labeled.path}: the labeled dataset has no training rows")

    torch.manual_seed(cfg.seed)
    if which == "finetuned":
        backbone, _ = load_model(pretrained)
    else:
        backbone = build_model(arch["arch"], **{k: v for k, v in arch.items() if k != "arch"})
    history: list[dict[str, Any]] = []
    if cfg.task == "classify" and cfg.adapt_steps:
        history = adapt_to_domain(
            backbone, train_ex, val_ex, cfg, pad_id=tok.eot_id, device=device, name=which
        )
    adapted: list[str] = []
    if which == "finetuned" and cfg.method == "lora":
        adapted = apply_lora(
            backbone, cfg.lora.target_modules, cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout
        )
    weight = None
    if cfg.task == "classify":
        model: torch.nn.Module = SequenceClassifier(
            backbone, len(labels), cfg.pooling, cfg.head_dropout, lm_score=cfg.lm_score
        )
        assert train_ex.labels is not None  # classify examples carry labels
        weight = class_weights(train_ex.labels, len(labels), cfg.class_weights)
    else:
        model = backbone
    result = train(model, train_ex, val_ex, cfg, pad_id=tok.eot_id, device=device, weight=weight, name=which)

    out = ctx.staging_dir / MODELS[which]
    adapter = lora_state_dict(model) if adapted else {}
    merge_lora(model)
    meta = {
        "task": cfg.task,
        "init": "pretrained" if which == "finetuned" else "scratch",
        "method": cfg.method if which == "finetuned" else "full",
        "lora": cfg.lora.model_dump() if adapted else None,
        "lora_modules": adapted,
        "labels": labels,
        "pooling": cfg.pooling,
        "lm_score": cfg.lm_score,
        "adapt_steps": history[-1]["step"] if history else 0,
        "max_len": max_len,
        "template": cfg.template,
        "best_step": result.best_step,
        "steps": result.steps,
    }
    save_finetuned(out, model.cpu(), meta, tokenizer_dir=pretrained / "tokenizer")
    if adapter:
        from safetensors.torch import save_file

        save_file({k: v.cpu().contiguous() for k, v in adapter.items()}, str(out / "adapter.safetensors"))
    if cfg.export_hf and which == "finetuned":
        from ..models.hf import export_checkpoint

        export_checkpoint(out, ctx.staging_dir / HF_DIR)
    writer = ctx.writer(DATA_VIEW, METRICS_SCHEMA, prefix=f"metrics-{which}")
    writer.write_rows(history + result.history)
    writer.close()
    return {
        "model": which,
        "checkpoint": MODELS[which],
        "examples": len(train_ex) + len(val_ex),
        "train": len(train_ex),
        "validation": len(val_ex),
        "steps": result.steps,
        "best_step": result.best_step,
        "best_val_loss": result.best_val_loss,
        "best_val_accuracy": result.best_val_accuracy,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 2),
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "adapt_steps": history[-1]["step"] if history else 0,
        "history": history + result.history,
    }
