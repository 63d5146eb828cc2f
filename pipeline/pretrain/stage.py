"""The pretrain stage: a token dataset in, a trained language model and its metrics out.

The published version directory holds the metrics table as its ``data`` view (one row per
logged train step and per evaluation), and beside the views the final ``checkpoint/``,
``metrics.csv`` and ``loss_curve.png``. Training is one unit of work: a retry (or a re-run of a
failed run) resumes from the newest checkpoint in ``<root>/work/pretrain/<fingerprint>/``, which
outlives the staging directory a failed attempt leaves behind.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from ..dataset import DATA_VIEW, Dataset
from ..errors import ValidationFailed
from ..models.checkpoint import is_checkpoint
from ..models.hf import init_digest
from ..stage import Phase, Stage, StageContext, StageResult
from .config import PretrainConfig
from .data import PackedSequences, unigram_entropy
from .launch import train_distributed
from .plots import markdown_summary, plot_loss_curve
from .train import train

CHECKPOINT_DIR = "checkpoint"
HF_DIR = "hf"  # the checkpoint as a transformers directory, with export_hf
METRICS_CSV = "metrics.csv"
LOSS_CURVE = "loss_curve.png"

METRICS_SCHEMA = pa.schema(
    [
        pa.field("step", pa.int64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # "train" (mean over the log interval) | "val"
        pa.field("loss", pa.float64(), nullable=False),  # cross-entropy, nats/token
        pa.field("perplexity", pa.float64(), nullable=False),
        pa.field("lr", pa.float64(), nullable=False),
        pa.field("tokens", pa.int64(), nullable=False),  # training tokens seen so far
        pa.field("tokens_per_s", pa.float64(), nullable=True),  # wall-clock: train rows only
        pa.field("mfu", pa.float64(), nullable=True),  # model FLOPs utilisation, GPU only
        pa.field("grad_norm", pa.float64(), nullable=True),  # before clipping
        pa.field("elapsed_s", pa.float64(), nullable=True),  # training seconds so far
    ]
)


def work_dir(root: Path, fingerprint: str) -> Path:
    """Where in-progress checkpoints live, stable across attempts of the same run."""
    return Path(root) / "work" / "pretrain" / fingerprint


class PretrainStage(Stage):
    name = "pretrain"
    inputs = ("tokenize",)
    config_model = PretrainConfig
    description = (
        "Train a GPT or LSTM language model by maximum likelihood; resumes from its last checkpoint."
    )
    schedule = "training"
    version = "1"
    data_schema = METRICS_SCHEMA
    rows_out_is_data_rows = False  # rows_in = rows_out = training sequences; data rows are metrics
    unique_ids = False

    def identity(self, config: BaseModel, inputs: dict[str, Dataset], parent: Dataset | None) -> dict:
        ident = super().identity(config, inputs, parent)
        init_from = config.init_from  # type: ignore[attr-defined]
        if init_from:
            # The model comes from those files: their bytes count, not their name, nor a shape.
            for key in ("arch", "gpt", "lstm", "init_from"):
                ident["config"].pop(key)
            ident["init_from_sha256"] = init_digest(init_from)
        else:
            # The shape of the model not chosen does not change the result.
            ident["config"].pop("lstm" if config.arch == "gpt" else "gpt")  # type: ignore[attr-defined]
        return ident

    def resolve_parent(self, config, root, inputs, mapper) -> Dataset | None:
        """Not incremental: each run trains one model on the whole token series (all versions)."""
        return None

    def on_published(self, result: StageResult) -> None:
        # The published checkpoint/ is the result; resumable work checkpoints are no longer needed.
        shutil.rmtree(work_dir(result.path.parent.parent.parent, result.fingerprint), ignore_errors=True)

    def summary_markdown(self, dataset: Dataset) -> str | None:
        png = dataset.path / "loss_curve.png"
        return markdown_summary(dataset.manifest.get("stats", {}), str(png) if png.is_file() else None)

    def phases(self) -> list[Phase]:
        return [Phase("train", lambda ctx, _: ["train"], train_unit)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        (r,) = results
        counts = {
            "rows_in": r["rows_in"],
            "rows_out": r["rows_out"],
            "rows_rejected": 0,
            "rejected_by_reason": {},
        }
        stats = r["stats"]
        totals = {"steps": stats["steps"], "tokens": stats["tokens"], "params": stats["params"]}
        return {"counts": counts, "stats": stats, "totals": totals}

    def validate(self, ctx: StageContext, manifest: dict[str, Any]) -> dict[str, Any]:
        """The model is complete and its losses are numbers; report whether it beats unigram."""
        stats = manifest["stats"]
        results: list[dict[str, Any]] = [
            {
                "expectation": "checkpoint complete",
                "success": is_checkpoint(ctx.staging_dir / CHECKPOINT_DIR),
            },
            {
                "expectation": "losses finite",
                "success": all(
                    v is None or math.isfinite(v) for v in (stats.get("train_loss"), stats.get("val_loss"))
                ),
            },
        ]
        failed = [r["expectation"] for r in results if not r["success"]]
        if failed:
            raise ValidationFailed(f"pretrain output failed validation: {', '.join(failed)}")
        val, base = stats.get("val_loss"), stats.get("unigram_entropy")
        if val is not None and base is not None:
            # Informational: a short run may not beat it; the default config does by far.
            results.append(
                {
                    "expectation": "val loss below unigram entropy",
                    "success": val < base,
                    "informational": True,
                }
            )
        return {"success": True, "results": results}


def train_unit(ctx: StageContext, _unit: str) -> dict[str, Any]:
    """Train (or resume) to the end, then write the checkpoint, metrics and plot into staging."""
    cfg: PretrainConfig = ctx.config
    tokens = ctx.input("tokenize")
    tokenizer_dir = tokens.path / "tokenizer"
    if cfg.nproc > 1 or cfg.strategy == "fsdp":
        result = train_distributed(cfg, tokens, work_dir(ctx.root, ctx.fingerprint))
    else:
        result = train(
            cfg,
            tokens,
            work_dir(ctx.root, ctx.fingerprint),
            tokenizer_dir if tokenizer_dir.is_dir() else None,
        )

    out = ctx.staging_dir
    checkpoint = out / CHECKPOINT_DIR
    shutil.rmtree(checkpoint, ignore_errors=True)  # a retried attempt in the same staging dir
    shutil.copytree(result.checkpoint, checkpoint)
    if cfg.export_hf:
        from ..models.hf import export_checkpoint

        export_checkpoint(checkpoint, out / HF_DIR)

    metrics = result.metrics
    writer = ctx.writer(DATA_VIEW, METRICS_SCHEMA, "metrics")
    writer.write(pa.Table.from_pylist(metrics, schema=METRICS_SCHEMA))
    writer.close()
    write_metrics_csv(metrics, out / METRICS_CSV)

    val = PackedSequences(tokens, "val")
    baseline = unigram_entropy(val) if val.num_rows else None
    plot_loss_curve(metrics, out / LOSS_CURVE, baseline)

    train_rows = PackedSequences(tokens, "train").num_rows
    stats = {
        **result.summary,
        "arch": cfg.arch,
        "world_size": cfg.nproc,
        "strategy": cfg.strategy if cfg.nproc > 1 or cfg.strategy == "fsdp" else None,
        "unigram_entropy": baseline,
        "beats_unigram": None
        if baseline is None or result.summary["val_loss"] is None
        else result.summary["val_loss"] < baseline,
        "checkpoint": CHECKPOINT_DIR,
        "hf": HF_DIR if cfg.export_hf else None,
        "init_from": cfg.init_from,
        "metrics_csv": METRICS_CSV,
        "loss_curve": LOSS_CURVE,
    }
    return {"rows_in": train_rows, "rows_out": train_rows, "rejected": {}, "stats": stats}


def write_metrics_csv(metrics: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_SCHEMA.names)
        w.writeheader()
        for row in metrics:
            w.writerow({k: "" if row.get(k) is None else row[k] for k in METRICS_SCHEMA.names})
