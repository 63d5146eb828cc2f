"""The run report: headline, counts, lineage and figures of a real (tiny) fine-tune run."""

from __future__ import annotations

import re

from test_finetune import TINY, make_labeled, make_pretrain, sentiment_rows

from pipeline.evaluate.config import CurveConfig, EvaluateConfig
from pipeline.evaluate.stage import EvaluateStage
from pipeline.finetune.config import FinetuneConfig
from pipeline.finetune.stage import FinetuneStage
from pipeline.labeled.config import LabeledConfig
from pipeline.labeled.stage import LabeledStage
from pipeline.report import build_run_report
from pipeline.stage import run_stage


def test_run_report(tmp_path):
    rows = sentiment_rows(160)
    pre = make_pretrain(tmp_path, [r["text"] for r in rows], steps=10)
    lab_ds = make_labeled(tmp_path, rows)
    lab = run_stage(LabeledStage(), LabeledConfig.model_validate(lab_ds.manifest["config"]), tmp_path, {})
    assert lab.cached and lab.path == lab_ds.path
    ft = run_stage(
        FinetuneStage(),
        FinetuneConfig(**{**TINY, "max_steps": 10}),
        tmp_path,
        {"pretrain": pre, "labeled": lab.dataset},
    )
    ev = run_stage(
        EvaluateStage(),
        EvaluateConfig(
            samples=1,
            max_new_tokens=4,
            curve=CurveConfig(budgets=[4, "all"], seeds=2, epochs=2, min_steps=3, max_steps=6, max_len=16),
        ),
        tmp_path,
        {"finetune": ft.dataset, "labeled": lab.dataset},
    )
    path = build_run_report(tmp_path, [lab, ft, ev])
    assert path.parent == tmp_path / "reports" and path.suffix == ".md"
    text = path.read_text()
    acc = ev.stats["models"]
    assert f"| pretrained + fine-tuned | {acc['finetuned']['accuracy']:.4f} |" in text
    assert f"| majority class | {acc['majority']['accuracy']:.4f} |" in text
    assert "Difference:" in text and "one seed" in text
    # the label-efficiency curve leads: its headline sentence, one row per budget, the figure
    curve = ev.stats["curve"]
    assert curve["headline"]["text"] in text and "| 4 | 8 |" in text
    assert "![label efficiency](" in text
    # every stage's counts, with reject reasons
    assert re.search(r"\| labeled \| `\w{12}` \| yes \| 160 \| 160 \| 0 \|", text)
    assert f"| finetune | `{ft.fingerprint[:12]}`" in text
    # lineage reaches the pretrain dataset through the fine-tune manifest, and the raw file
    assert f"**pretrain** `{pre.fingerprint[:12]}`" in text and "labeled.jsonl" in text
    assert "checkpoint: [checkpoint/]" in text and "baseline: [baseline/]" in text
    # every linked figure exists
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert any("curves.png" in x for x in links) and any("confusion-finetuned.png" in x for x in links)
    assert any("label-efficiency.png" in x for x in links)
    assert all((path.parent / x).is_file() for x in links)
    assert build_run_report(tmp_path, [lab, ft, ev]) == path and path.read_text() == text


def test_report_shows_contamination_per_eval_set():
    from pipeline.decontaminate.summary import decontamination_section

    stats = {
        "eval_sets": {
            "labeled.test": {
                "texts": 349,
                "n": 13,
                "matched_by": {"ngram": 252, "whole_text": 97, "exact_document": 0},
                "docs_rejected": 232,
                "docs_overlapping": 232,
                "texts_found": 199,
            },
        },
        "rule": "a document is rejected when ...",
    }
    lines = decontamination_section(stats)
    assert "| labeled.test | 349 | 13 | 252 | 97 | 0 | 232 | 232 | 199 |" in lines
    assert lines[-1] == stats["rule"]
