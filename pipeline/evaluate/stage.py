"""The evaluate stage: fine-tuned vs from-scratch vs majority class, on the held-out split.

For classifiers: accuracy, macro-F1, per-class scores and confusion matrices (table in the
manifest, PNG beside the views) of the fine-tuned model, of the same-budget model trained from
scratch (both from the fine-tune stage) and of the majority-class baseline. For instruction
tuning: perplexity of the response tokens for both models and greedy answers to test prompts.
Always, for the pretrained language model itself: its perplexity on the held-out texts and a
few greedy continuations. The headline is the first: pretrained-then-fine-tuned vs from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..dataset import DATA_VIEW, Dataset
from ..errors import ConfigError
from ..finetune.config import FinetuneConfig
from ..finetune.heads import load_finetuned
from ..finetune.instruct import encode_pair, greedy_answer, render
from ..finetune.stage import MODELS, build_examples, load_split_rows
from ..finetune.train import Examples, evaluate, open_tokenizer
from ..models.checkpoint import load_model
from ..models.runtime import perplexity, resolve_device, torch_exclusive
from ..pretrain.generate import generate
from ..stage import Phase, Stage, StageContext
from .config import EvaluateConfig
from .metrics import classification_metrics, majority_baseline
from .plots import plot_confusion

RESULTS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),  # finetuned | scratch | majority | pretrained
        pa.field("metric", pa.string(), nullable=False),  # accuracy | macro_f1 | loss | perplexity
        pa.field("value", pa.float64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)


class EvaluateStage(Stage):
    name = "evaluate"
    inputs = ("finetune", "labeled")
    config_model = EvaluateConfig
    description = "Score fine-tuned vs from-scratch vs majority class on the test split; LM perplexity and samples."
    schedule = "training"
    version = "1"
    data_schema = RESULTS_SCHEMA
    rows_out_is_data_rows = False  # the data view holds metric rows; rows count test examples

    def prepare(self, ctx: StageContext) -> None:
        finetune, labeled = ctx.input("finetune"), ctx.input("labeled")
        used = {i["stage"]: i["fingerprint"] for i in finetune.manifest["inputs"]}
        if used.get("labeled") != labeled.fingerprint:
            raise ConfigError(
                f"evaluate: the labeled dataset {labeled.fingerprint} is not the one the fine-tune "
                f"{finetune.fingerprint} was trained on ({used.get('labeled')})"
            )

    def phases(self) -> list[Phase]:
        return [Phase("evaluate", lambda ctx, _: ["all"], evaluate_unit)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        (r,) = results
        counts = {"rows_in": r["n"], "rows_out": r["n"], "rows_rejected": 0, "rejected_by_reason": {}}
        return {"counts": counts, "stats": r["stats"], "totals": {"examples": r["n"]}}


@torch_exclusive
def evaluate_unit(ctx: StageContext, _: str) -> dict[str, Any]:
    cfg: EvaluateConfig = ctx.config
    device = resolve_device(cfg.device)
    finetune, labeled = ctx.input("finetune"), ctx.input("labeled")
    ft_cfg = FinetuneConfig.model_validate(finetune.manifest["config"])
    ckpt = ctx.root / finetune.manifest["stats"]["pretrained_checkpoint"]
    pretrained = Dataset(ckpt.parent).path / ckpt.name  # opening fetches it from a store root
    tok = open_tokenizer(pretrained)
    available = {name: finetune.path / d for name, d in MODELS.items() if (finetune.path / d).is_dir()}
    rows_eval = load_split_rows(labeled, cfg.split)
    n = len(rows_eval["text"])
    results: list[dict[str, Any]] = []
    stats: dict[str, Any] = {"task": ft_cfg.task, "split": cfg.split, "n": n, "models": {}}

    def add(model: str, metric: str, value: float) -> None:
        results.append({"model": model, "metric": metric, "value": float(value), "split": cfg.split})

    if ft_cfg.task == "classify":
        labels = [x["label"] for x in sorted(labeled.manifest["stats"]["labels"], key=lambda x: x["id"])]
        stats["labels"] = labels
        y_true = np.array(rows_eval["label_id"], dtype=np.int64)
        train_labels = np.array(load_split_rows(labeled, "train")["label_id"], dtype=np.int64)
        preds = {"majority": majority_baseline(train_labels, n)}
        for name, path in available.items():
            model, meta = load_finetuned(path, device)
            ex = build_examples(rows_eval, tok, ft_cfg, meta["max_len"])
            out = evaluate(model, ex, tok.eot_id, device, cfg.batch_size)
            preds[name] = out["predictions"]
            add(name, "loss", out["loss"])
        plots = {}
        for name, p in preds.items():
            m = classification_metrics(y_true, p, len(labels))
            stats["models"][name] = m
            add(name, "accuracy", m["accuracy"])
            add(name, "macro_f1", m["macro_f1"])
            if name != "majority":
                png = plot_confusion(
                    m["confusion"], labels, ctx.staging_dir / f"confusion-{name}.png", f"{name} ({cfg.split})"
                )
                plots[name] = png.name
        stats["confusion_plots"] = plots
        stats["headline"] = headline(stats["models"], "accuracy")
    else:
        for name, path in available.items():
            model, meta = load_finetuned(path, device)
            ex = build_examples(rows_eval, tok, ft_cfg, meta["max_len"])
            loss = evaluate(model, ex, tok.eot_id, device, cfg.batch_size)["loss"]
            stats["models"][name] = {"response_loss": loss, "response_perplexity": perplexity(loss)}
            add(name, "response_perplexity", perplexity(loss))
            stats["models"][name]["samples"] = [
                {
                    "prompt": p,
                    "reference": ref,
                    "answer": tok.decode(
                        greedy_answer(
                            model, tok.encode(render(p, ft_cfg.template)), tok.eot_id, cfg.max_new_tokens
                        )
                    ),
                }
                for p, ref in zip(
                    rows_eval["text"][: cfg.samples], rows_eval["response"][: cfg.samples], strict=True
                )
            ]
        stats["headline"] = headline(stats["models"], "response_perplexity", lower_is_better=True)
    stats["pretrained"] = pretrained_lm(pretrained, rows_eval, tok, ft_cfg, cfg, device)
    add("pretrained", "perplexity", stats["pretrained"]["perplexity"])

    writer = ctx.writer(DATA_VIEW, RESULTS_SCHEMA, prefix="results")
    writer.write_rows(results)
    writer.close()
    return {"n": n, "stats": stats}


def headline(models: dict[str, dict[str, Any]], metric: str, lower_is_better: bool = False) -> dict[str, Any]:
    """Fine-tuned vs from scratch (and the majority class when there is one) on one metric."""
    out = {"metric": metric}
    for name in ("finetuned", "scratch", "majority"):
        if name in models:
            out[name] = models[name][metric]
    if "finetuned" in out and "scratch" in out:
        gain = out["finetuned"] - out["scratch"]
        out["gain"] = -gain if lower_is_better else gain
    return out


def pretrained_lm(
    checkpoint: Path, rows: dict[str, list[Any]], tok, ft_cfg: FinetuneConfig, cfg: EvaluateConfig, device
) -> dict[str, Any]:
    """The pretrained LM's perplexity on the held-out texts, and greedy continuations of a few."""
    model, mcfg = load_model(checkpoint, device=device)
    max_len = mcfg.block_size
    if ft_cfg.task == "classify":
        docs = [tok.encode_batch([t])[0] + [tok.eot_id] for t in rows["text"]]
        docs = [np.array(d[: max_len + 1], dtype=np.int64) for d in docs]
        ex = Examples([d[:-1] for d in docs if len(d) > 1], targets=[d[1:] for d in docs if len(d) > 1])
        prompts = [tok.decode(tok.encode(t)[: cfg.sample_prompt_tokens]) for t in rows["text"][: cfg.samples]]
    else:
        pairs = [
            encode_pair(tok.encode(render(p, ft_cfg.template)), tok.encode(r), tok.eot_id, max_len)
            for p, r in zip(rows["text"], rows["response"], strict=True)
        ]
        ex = Examples([x for x, _ in pairs], targets=[y for _, y in pairs])
        prompts = [render(p, ft_cfg.template) for p in rows["text"][: cfg.samples]]
    loss = evaluate(model, ex, tok.eot_id, device, cfg.batch_size)["loss"] if len(ex) else float("nan")
    # Sampled (temperature, top-k, fixed seed) as `tokenmill generate` does, so the report shows
    # the kind of text the model writes rather than a greedy loop.
    samples = [
        {
            "prompt": p,
            "continuation": generate(
                checkpoint, p, cfg.max_new_tokens, seed=cfg.seed + i, device=str(device)
            ),
        }
        for i, p in enumerate(prompts)
    ]
    return {
        "loss": loss,
        "perplexity": perplexity(loss),
        "tokens": int(sum(len(t) for t in ex.ids)),
        "samples": samples,
    }
