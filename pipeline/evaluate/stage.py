"""The evaluate stage: fine-tuned vs from-scratch vs majority class, on the held-out split.

For classifiers: accuracy, macro-F1, per-class scores and confusion matrices (table in the
manifest, PNG beside the views) of the fine-tuned model, of the same-budget model trained from
scratch (both from the fine-tune stage) and of the majority-class baseline. For instruction
tuning: perplexity of the response tokens for both models and greedy answers to test prompts.
Always, for the pretrained language model itself: its perplexity on the held-out texts and a
few greedy continuations.

For classifiers, a second phase draws the label-efficiency curve (`curves.py`): pretrained vs
from scratch vs TF-IDF at several label budgets, several seeds each, one unit of work per
(budget, seed, model) so an engine runs them side by side. The run's headline is the curve's:
the budget with the largest paired gain, and whether that gain exceeds the seed spread.
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
from .curves import MODELS as CURVE_MODELS
from .curves import curve_steps, subset, summarize, tfidf_accuracy
from .metrics import classification_metrics, majority_baseline
from .plots import plot_confusion, plot_label_efficiency

LM_EVAL_SPLIT = "lm_eval"  # the split column of lm-eval rows; their metric is "<task>:<metric>"

RESULTS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),  # finetuned | scratch | majority | pretrained
        pa.field("metric", pa.string(), nullable=False),  # accuracy | macro_f1 | loss | perplexity
        pa.field("value", pa.float64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("budget", pa.string(), nullable=True),  # label-efficiency runs: labels per class or "all"
        pa.field("seed", pa.int64(), nullable=True),
    ]
)
CURVE_PNG = "label-efficiency.png"


class EvaluateStage(Stage):
    name = "evaluate"
    inputs = ("finetune", "labeled")
    config_model = EvaluateConfig
    description = (
        "Score fine-tuned vs from-scratch vs majority class on the test split; LM perplexity and samples."
    )
    schedule = "training"
    version = "3"  # 2: label-efficiency curves; 3: curve units take turns in one process (determinism)
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
        return [
            Phase("evaluate", plan_evaluate, evaluate_unit),
            Phase("curve", plan_curve, curve_unit),
        ]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        (r,) = ctx.extra["evaluated"]
        stats = r["stats"]
        if results:
            majority = stats["models"]["majority"]["accuracy"]
            curve = summarize(results, majority)
            curve["split"], curve["png"], curve["classes"] = stats["split"], CURVE_PNG, len(stats["labels"])
            curve["recipe"] = ctx.extra["curve_recipe"]
            plot_label_efficiency(curve, ctx.staging_dir / CURVE_PNG)
            stats["curve"] = curve
        counts = {"rows_in": r["n"], "rows_out": r["n"], "rows_rejected": 0, "rejected_by_reason": {}}
        return {"counts": counts, "stats": stats, "totals": {"examples": r["n"]}}

    def summary_markdown(self, dataset: Dataset) -> str | None:
        from .summary import curve_section

        curve = dataset.manifest.get("stats", {}).get("curve")
        return "\n".join(curve_section(curve, None)) if curve else None


def plan_evaluate(ctx: StageContext, _: list[Any]) -> list[str]:
    return ["all"]  # one unit: every published model on the held-out split


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
        results.append(
            {
                "model": model,
                "metric": metric,
                "value": float(value),
                "split": cfg.split,
                "budget": None,
                "seed": None,
            }
        )

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
    if cfg.lm_eval.tasks:
        models = {"pretrained": pretrained}
        if ft_cfg.task == "instruct" and "finetuned" in available:
            models["finetuned"] = available["finetuned"]
        stats["lm_eval"] = harness_scores(models, cfg, str(device), ctx.staging_dir)
        for name, by_task in stats["lm_eval"]["models"].items():
            for task, metrics in by_task.items():
                for metric, value in metrics.items():
                    results.append(
                        {"model": name, "metric": f"{task}:{metric}", "value": value, "split": LM_EVAL_SPLIT}
                    )

    writer = ctx.writer(DATA_VIEW, RESULTS_SCHEMA, prefix="results")
    writer.write_rows(results)
    writer.close()
    return {"n": n, "stats": stats}


def harness_scores(
    checkpoints: dict[str, Path], cfg: EvaluateConfig, device: str, scratch: Path
) -> dict[str, Any]:
    """lm-eval scores of each checkpoint, run on its transformers export (the one beside it, or a
    temporary one)."""
    import tempfile

    from ..models.hf import export_checkpoint
    from .harness import run_harness

    out: dict[str, Any] = {"tasks": list(cfg.lm_eval.tasks), "models": {}, "samples": {}}
    for name, ckpt in checkpoints.items():
        exported = ckpt.parent / "hf"
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".hf-") as tmp:
            if not (exported / "config.json").is_file():
                exported = Path(tmp) / "model"
                export_checkpoint(ckpt, exported)
            r = run_harness(
                exported,
                cfg.lm_eval.tasks,
                include_path=cfg.lm_eval.include_path,
                num_fewshot=cfg.lm_eval.num_fewshot,
                limit=cfg.lm_eval.limit,
                batch_size=cfg.lm_eval.batch_size,
                device=device,
                seed=cfg.seed,
            )
        out["models"][name] = r["tasks"]
        out["samples"], out["version"] = r["samples"], r["version"]
    return out


def headline(models: dict[str, dict[str, Any]], metric: str, lower_is_better: bool = False) -> dict[str, Any]:
    """Fine-tuned vs from scratch (and the majority class when there is one) on one metric."""
    out: dict[str, Any] = {"metric": metric}
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


# -- label-efficiency curve ----------------------------------------------------------------------
def plan_curve(ctx: StageContext, evaluated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One unit per (budget, seed, model), the largest budgets first (they take longest)."""
    ctx.extra["evaluated"] = evaluated
    cfg: EvaluateConfig = ctx.config
    finetune = ctx.input("finetune")
    ft_cfg = FinetuneConfig.model_validate(finetune.manifest["config"])
    if ft_cfg.task != "classify" or not cfg.curve.enabled:
        return []
    counts = {x["label"]: x["train"] for x in ctx.input("labeled").manifest["stats"]["labels"]}
    largest = max(counts.values(), default=0)
    budgets = sorted(cfg.curve.budgets, key=lambda b: -(largest + 1 if b == "all" else int(b)))
    units = []
    for b in budgets:
        for model in CURVE_MODELS:
            for seed in range(cfg.curve.seeds):
                units.append(
                    {
                        "budget": str(b),
                        "per_class": None if b == "all" else int(b),
                        "seed": seed,
                        "model": model,
                    }
                )
    ctx.extra["curve_recipe"] = curve_recipe(ft_cfg, cfg).model_dump(mode="json") | {
        "epochs": cfg.curve.epochs,
        "min_steps": cfg.curve.min_steps,
        "max_steps": cfg.curve.max_steps,
    }
    return units


def curve_recipe(ft_cfg: FinetuneConfig, cfg: EvaluateConfig) -> FinetuneConfig:
    """The fine-tune recipe as the curve uses it: fixed steps, final weights, no validation."""
    return ft_cfg.model_copy(
        update={
            "batch_size": cfg.curve.batch_size or ft_cfg.batch_size,
            "max_len": cfg.curve.max_len or ft_cfg.max_len,
            "patience": 0,
            "adapt_steps": 0,
            "threads": cfg.curve.threads,
        }
    )


@torch_exclusive  # its RNG draws and thread count are torch's process-global state
def curve_unit(ctx: StageContext, unit: dict[str, Any]) -> dict[str, Any]:
    """Train one model on one budget's subset for one seed; its score on the held-out split."""
    import time

    import torch

    from ..finetune.heads import SequenceClassifier
    from ..finetune.lora import apply_lora
    from ..finetune.train import class_weights, train
    from ..models import build_model
    from ..models.checkpoint import read_model_config

    t0 = time.perf_counter()
    cfg: EvaluateConfig = ctx.config
    finetune, labeled = ctx.input("finetune"), ctx.input("labeled")
    recipe = curve_recipe(FinetuneConfig.model_validate(finetune.manifest["config"]), cfg)
    labels = [x["label"] for x in sorted(labeled.manifest["stats"]["labels"], key=lambda x: x["id"])]
    train_rows = _rows_with_ids(labeled, "train")
    test_rows = load_split_rows(labeled, cfg.split)
    y_train = np.array(train_rows["label_id"], dtype=np.int64)
    y_test = np.array(test_rows["label_id"], dtype=np.int64)
    pick = subset(train_rows["id"], y_train, unit["per_class"], unit["seed"])
    texts = [train_rows["text"][i] for i in pick.tolist()]
    steps: int | None  # None for tf-idf, which has no optimizer steps
    steps = curve_steps(
        len(pick), recipe.batch_size, cfg.curve.epochs, cfg.curve.min_steps, cfg.curve.max_steps
    )
    if unit["model"] == "tfidf":
        preds = tfidf_accuracy(texts, y_train[pick], test_rows["text"], cfg.curve.tfidf_c)
        steps = None
    else:
        if recipe.threads:
            torch.set_num_threads(recipe.threads)
        device = resolve_device(cfg.device)
        ckpt = ctx.root / finetune.manifest["stats"]["pretrained_checkpoint"]
        pretrained = Dataset(ckpt.parent).path / ckpt.name
        tok = open_tokenizer(pretrained)
        arch = read_model_config(pretrained)
        max_len = min(recipe.max_len, arch["block_size"])
        rows = {"text": texts, "label_id": y_train[pick].tolist(), "response": [None] * len(texts)}
        train_ex = build_examples(rows, tok, recipe, max_len)
        test_ex = build_examples(test_rows, tok, recipe, max_len)
        seed = recipe.seed * 1_000 + unit["seed"]
        torch.manual_seed(seed)
        if unit["model"] == "finetuned":
            backbone, _ = load_model(pretrained)
            if recipe.method == "lora":
                lora = recipe.lora
                apply_lora(backbone, lora.target_modules, lora.rank, lora.alpha, lora.dropout)
        else:
            backbone = build_model(arch["arch"], **{k: v for k, v in arch.items() if k != "arch"})
        model = SequenceClassifier(
            backbone, len(labels), recipe.pooling, recipe.head_dropout, lm_score=recipe.lm_score
        )
        assert train_ex.labels is not None  # classify examples carry labels
        weight = class_weights(train_ex.labels, len(labels), recipe.class_weights)
        run = recipe.model_copy(
            update={
                "max_steps": steps,
                "eval_interval": steps,
                "seed": seed,
                "warmup_steps": min(recipe.warmup_steps, max(1, steps // 10)),
            }
        )
        none = Examples([], labels=np.zeros(0, dtype=np.int64))
        train(
            model,
            train_ex,
            none,
            run,
            pad_id=tok.eot_id,
            device=device,
            weight=weight,
            name=f"curve-{unit['budget']}-{unit['model']}-{unit['seed']}",
        )
        preds = evaluate(model, test_ex, tok.eot_id, device, cfg.batch_size)["predictions"]
    m = classification_metrics(y_test, preds, len(labels))
    writer = ctx.writer(
        DATA_VIEW, RESULTS_SCHEMA, prefix=f"curve-{unit['budget']}-{unit['model']}-{unit['seed']}"
    )
    writer.write_rows(
        [
            {
                "model": unit["model"],
                "metric": k,
                "value": float(m[k]),
                "split": cfg.split,
                "budget": unit["budget"],
                "seed": unit["seed"],
            }
            for k in ("accuracy", "macro_f1")
        ]
    )
    writer.close()
    return {
        **unit,
        "n_train": len(pick),
        "steps": steps,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _rows_with_ids(labeled: Dataset, split: str) -> dict[str, list[Any]]:
    """Ids, texts and label ids of one split, in the dataset's order."""
    import pyarrow.compute as pc

    out: dict[str, list[Any]] = {"id": [], "text": [], "label_id": []}
    for batch in labeled.iter_batches(columns=["id", "text", "label_id", "split"]):
        t = pa.Table.from_batches([batch])
        t = t.filter(pc.equal(t["split"], split))
        for k, values in out.items():
            values.extend(t[k].to_pylist())
    return out
