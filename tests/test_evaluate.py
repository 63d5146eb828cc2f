"""Evaluate stage and metrics: checked against hand-computed values and a real small run."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_finetune import TINY, make_labeled, make_pretrain, sentiment_rows

from pipeline.errors import ConfigError
from pipeline.evaluate.config import EvaluateConfig
from pipeline.evaluate.metrics import classification_metrics, majority_baseline, perplexity
from pipeline.evaluate.stage import EvaluateStage
from pipeline.finetune.config import FinetuneConfig
from pipeline.finetune.stage import FinetuneStage
from pipeline.stage import run_stage


def test_classification_metrics_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    m = classification_metrics(y_true, y_pred, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    # class 0: p 2/3 r 2/3 f1 2/3; class 1: p 1/2 r 1/2 f1 1/2; class 2: 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["per_class"]["support"] == [3, 2, 1]


def test_macro_f1_counts_classes_never_predicted_as_zero():
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), 3)
    assert m["macro_f1"] == pytest.approx((2 * 0.5 * 1 / 1.5 + 0) / 2)  # class 2 absent everywhere: left out


def test_majority_baseline_and_perplexity():
    assert majority_baseline(np.array([1, 1, 0, 2, 2]), 3).tolist() == [1, 1, 1]  # tie -> smallest id
    assert perplexity(0.0) == 1.0 and perplexity(np.log(8)) == pytest.approx(8)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tuned")
    rows = sentiment_rows(240)
    pre = make_pretrain(tmp_path, [r["text"] for r in rows], steps=30)
    lab = make_labeled(tmp_path, rows)
    ft = run_stage(FinetuneStage(), FinetuneConfig(**TINY), tmp_path, {"pretrain": pre, "labeled": lab})
    return tmp_path, ft, lab


def test_evaluate_reports_models_baselines_and_plots(tuned):
    root, ft, lab = tuned
    res = run_stage(
        EvaluateStage(),
        # The label-efficiency curve has its own test below; here it would be most of the time.
        EvaluateConfig(samples=2, max_new_tokens=5, curve={"enabled": False}),
        root,
        {"finetune": ft.dataset, "labeled": lab},
    )
    s = res.stats
    assert res.counts["rows_in"] == s["n"] == 48
    assert set(s["models"]) == {"finetuned", "scratch", "majority"}
    assert s["models"]["majority"]["accuracy"] == pytest.approx(0.5)
    assert s["headline"]["finetuned"] == s["models"]["finetuned"]["accuracy"]
    assert s["headline"]["gain"] == pytest.approx(s["headline"]["finetuned"] - s["headline"]["scratch"])
    assert s["models"]["finetuned"]["accuracy"] > 0.7  # an easy task, the model learned it
    assert sum(map(sum, s["models"]["finetuned"]["confusion"])) == 48
    for name in ("finetuned", "scratch"):
        assert (res.path / s["confusion_plots"][name]).stat().st_size > 1000
    rows = pq.read_table(res.data_path).to_pylist()
    assert {(r["model"], r["metric"]) for r in rows} >= {
        ("finetuned", "accuracy"),
        ("majority", "macro_f1"),
        ("pretrained", "perplexity"),
    }
    assert s["pretrained"]["perplexity"] > 1 and len(s["pretrained"]["samples"]) == 2


def test_evaluate_refuses_a_labeled_set_the_model_was_not_tuned_on(tuned, tmp_path_factory):
    root, ft, _ = tuned
    other = make_labeled(root, sentiment_rows(100, seed=1), seed=7)
    with pytest.raises(ConfigError, match="not the one"):
        run_stage(EvaluateStage(), EvaluateConfig(), root, {"finetune": ft.dataset, "labeled": other})


def test_evaluate_instruct_reports_response_perplexity_and_answers(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    rows = [{"prompt": f"Repeat {w} ({i}).", "response": f"{w} {w}"} for i, w in enumerate(words * 8)]
    pre = make_pretrain(tmp_path, [r["prompt"] + " " + r["response"] for r in rows])
    lab = make_labeled(tmp_path, rows, task="instruct")
    ft = run_stage(
        FinetuneStage(),
        FinetuneConfig(**{**TINY, "max_len": 32, "max_steps": 20}, task="instruct"),
        tmp_path,
        {"pretrain": pre, "labeled": lab},
    )
    res = run_stage(
        EvaluateStage(),
        EvaluateConfig(samples=2, max_new_tokens=4),
        tmp_path,
        {"finetune": ft.dataset, "labeled": lab},
    )
    s = res.stats
    assert s["task"] == "instruct" and set(s["models"]) == {"finetuned", "scratch"}
    ft_ppl = s["models"]["finetuned"]["response_perplexity"]
    assert 1 < ft_ppl < s["pretrained"]["perplexity"]  # tuning on responses beats the untuned LM on them
    assert s["headline"]["metric"] == "response_perplexity"
    assert s["headline"]["gain"] == pytest.approx(s["models"]["scratch"]["response_perplexity"] - ft_ppl)
    sample = s["models"]["finetuned"]["samples"][0]
    assert sample["prompt"].startswith("Repeat") and isinstance(sample["answer"], str)


# -- label-efficiency curves --------------------------------------------------------------------------
def test_curve_subsets_are_balanced_nested_and_seeded():
    from pipeline.evaluate.curves import subset

    ids = [f"doc{i}" for i in range(300)]
    labels = np.array([i % 3 for i in range(300)])
    small, big = subset(ids, labels, 8, seed=0), subset(ids, labels, 32, seed=0)
    assert np.bincount(labels[small]).tolist() == [8, 8, 8] and np.bincount(labels[big]).tolist() == [32] * 3
    assert set(small) <= set(big)  # one seed's smaller budget is part of its larger one
    assert set(subset(ids, labels, 8, seed=1)) != set(small)
    assert subset(ids, labels, None, seed=0).tolist() == list(range(300))
    assert len(subset(ids, labels, 500, seed=0)) == 300  # a budget above a class's size takes the class


def test_curve_steps_scale_with_the_budget_within_bounds():
    from pipeline.evaluate.curves import curve_steps

    assert curve_steps(48, 32, 20, 30, 150) == 30
    assert curve_steps(192, 32, 20, 30, 150) == 120
    assert curve_steps(5000, 32, 20, 30, 150) == 150


def _runs(budget, per_class, ft, sc, tf=None):
    out = []
    for seed, (a, b) in enumerate(zip(ft, sc, strict=True)):
        out.append(
            {
                "budget": budget,
                "per_class": per_class,
                "n_train": 60,
                "steps": 30,
                "seed": seed,
                "model": "finetuned",
                "accuracy": a,
            }
        )
        out.append(
            {
                "budget": budget,
                "per_class": per_class,
                "n_train": 60,
                "steps": 30,
                "seed": seed,
                "model": "scratch",
                "accuracy": b,
            }
        )
        if tf:
            out.append(
                {
                    "budget": budget,
                    "per_class": per_class,
                    "n_train": 60,
                    "seed": seed,
                    "model": "tfidf",
                    "accuracy": tf[seed],
                }
            )
    return out


def test_curve_summary_pairs_seeds_and_claims_only_gains_beyond_the_spread():
    from pipeline.evaluate.curves import holds, summarize

    results = _runs("8", 8, [0.60, 0.70, 0.65], [0.40, 0.45, 0.42], [0.5, 0.5, 0.5])
    results += _runs("all", None, [0.80, 0.90, 0.85], [0.82, 0.80, 0.86])
    s = summarize(results, majority=0.3)
    eight, full = s["budgets"]
    assert eight["gain"] == pytest.approx(np.mean([0.20, 0.25, 0.23]))
    assert eight["gain_sd"] == pytest.approx(np.std([0.20, 0.25, 0.23], ddof=1))
    assert eight["finetuned"]["mean"] == pytest.approx(0.65) and eight["tfidf"]["sd"] == 0.0
    assert eight["holds"] and not full["holds"]  # +0.023 +- 0.08 at "all" is noise
    h = s["headline"]
    assert h["budget"] == "8" and h["holds"] and "larger than the seed spread" in h["text"]
    # The largest gain inside the noise is named, but never claimed.
    noisy = summarize(_runs("8", 8, [0.70, 0.40, 0.65], [0.40, 0.45, 0.42]), majority=0.3)["headline"]
    assert noisy["gain"] > 0 and not noisy["holds"] and "no gain is claimed" in noisy["text"]
    worse = summarize(_runs("8", 8, [0.3, 0.3], [0.4, 0.5]), majority=0.3)["headline"]
    assert not worse["holds"] and "does not help" in worse["text"]
    assert not holds([0.2])  # one seed has no spread: nothing is claimed
    assert not holds([0.3, 0.01, -0.001])  # a seed where it lost


def test_curve_plot_is_a_png(tmp_path):
    from pipeline.evaluate.curves import summarize
    from pipeline.evaluate.plots import plot_label_efficiency

    s = summarize(
        _runs("8", 8, [0.6, 0.7], [0.4, 0.45], [0.5, 0.55]) + _runs("all", None, [0.8, 0.9], [0.8, 0.8]), 0.3
    )
    s["classes"], s["split"] = 2, "test"
    png = plot_label_efficiency(s, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_evaluate_draws_the_label_efficiency_curve(tuned):
    from pipeline.evaluate.config import CurveConfig

    root, ft, lab = tuned
    cfg = EvaluateConfig(
        samples=0,
        curve=CurveConfig(budgets=[4, 16, "all"], seeds=2, epochs=4, min_steps=4, max_steps=12, max_len=16),
    )
    res = run_stage(EvaluateStage(), cfg, root, {"finetune": ft.dataset, "labeled": lab})
    curve = res.stats["curve"]
    assert [r["budget"] for r in curve["budgets"]] == ["all", "16", "4"]
    four = curve["budgets"][2]
    assert four["n_train"] == 8 and four["seeds"] == 2 and len(four["finetuned"]["runs"]) == 2
    assert four["gains"] == pytest.approx(
        np.subtract(four["finetuned"]["runs"], four["scratch"]["runs"]).tolist()
    )
    assert 0 <= four["tfidf"]["mean"] <= 1 and curve["majority"] == pytest.approx(0.5)
    assert curve["headline"]["budget"] in {"all", "16", "4"} and curve["headline"]["text"]
    assert (res.path / curve["png"]).stat().st_size > 5_000
    rows = pq.read_table(res.data_path).to_pylist()
    curve_rows = [r for r in rows if r["budget"] is not None]
    assert len(curve_rows) == 3 * 3 * 2 * 2  # budgets x models x seeds x (accuracy, macro_f1)
    assert {r["model"] for r in curve_rows} == {"finetuned", "scratch", "tfidf"}
    # Deterministic: the same inputs and config give the same curve.
    again = run_stage(
        EvaluateStage(), cfg.model_copy(update={"seed": 1}), root, {"finetune": ft.dataset, "labeled": lab}
    )
    assert again.fingerprint != res.fingerprint
    assert again.stats["curve"]["budgets"] == curve["budgets"]
