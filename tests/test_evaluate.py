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
        EvaluateConfig(samples=2, max_new_tokens=5),
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
