"""`tokenmill ablate`: variants planned and refused, the held-out set, a small run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import stdlib_docstrings, write_jsonl
from typer.testing import CliRunner

from flows.cli import app
from pipeline.ablate.heldout import contaminated, ngram_hashes
from pipeline.ablate.plan import Variant, parse_variant_args, plan_ablation
from pipeline.errors import ConfigError


def test_variant_arguments_keep_their_order():
    base, variants = parse_variant_args(
        [
            "--set",
            "pretrain.max_steps=50",
            "--variant",
            "a",
            "--set",
            "x.y=1",
            "--set=x.z=2",
            "--variant=b",
            "--set",
            "q=3",
        ]
    )
    assert base == ["pretrain.max_steps=50"]
    assert variants == [Variant("a", ("x.y=1", "x.z=2")), Variant("b", ("q=3",))]
    with pytest.raises(ConfigError, match="unexpected argument"):
        parse_variant_args(["--variant", "a", "stray"])


def test_plan_shares_what_runs_agree_on():
    plan = plan_ablation([Variant("relaxed", ("filter.gopher_repetition.enabled=false",))])
    (variant,) = [r for r in plan.runs if r.variant == "relaxed"]
    assert variant.first_stage == "filter"
    shared = {i.stage for i in plan.shared()}
    assert shared == {"ingest", "dedup", "annotate", "labeled"}
    assert [i.stage for i in plan.own(variant)] == [
        "filter",
        "decontaminate",
        "tokenize",
        "pretrain",
        "finetune",
        "evaluate",
    ]
    # The proxy preset is applied, and a --set overrides it.
    assert variant.config.pretrain.max_steps == 200
    plan = plan_ablation(
        [Variant("v", ("tokenize.vocab_size=2048",))], base_overrides=["pretrain.max_steps=7"]
    )
    assert all(r.config.pretrain.max_steps == 7 for r in plan.runs)
    assert {i.stage for i in plan.shared()} == {
        "ingest",
        "dedup",
        "annotate",
        "filter",
        "labeled",
        "decontaminate",
    }


def test_seeds_share_everything_but_pretraining():
    plan = plan_ablation([Variant("v", ("tokenize.vocab_size=2048",))], until="pretrain", seeds=2)
    assert sorted(r.name for r in plan.runs) == ["baseline@1337", "baseline@1338", "v@1337", "v@1338"]
    tokenize = {r.name: r.instances["tokenize"] for r in plan.runs}
    assert tokenize["baseline@1337"] == tokenize["baseline@1338"] != tokenize["v@1337"]
    assert len({r.instances["pretrain"] for r in plan.runs}) == 4


def test_variants_that_change_nothing_are_refused():
    with pytest.raises(ConfigError, match="variant 'same' changes nothing"):
        plan_ablation([Variant("same", ("filter.gopher_repetition.enabled=true",))])
    with pytest.raises(ConfigError, match=r"variant 'late' changes nothing.*after --until pretrain"):
        plan_ablation([Variant("late", ("evaluate.batch_size=8",))], until="pretrain")
    with pytest.raises(ConfigError, match="'a' and 'b' are the same configuration"):
        plan_ablation([Variant("a", ("tokenize.seed=3",)), Variant("b", ("tokenize.seed=3",))])
    with pytest.raises(ConfigError, match="variant 'bad'"):
        plan_ablation([Variant("bad", ("filter.nosuch.rule=1",))])
    with pytest.raises(ConfigError, match="not 'baseline'"):
        plan_ablation([Variant("baseline", ("tokenize.seed=3",))])


def test_cli_refuses_a_noop_variant_naming_it(tmp_path):
    res = CliRunner().invoke(
        app,
        ["ablate", "--data-dir", str(tmp_path), "--variant", "noop", "--set", "tokenize.seed=0"],
    )
    assert res.exit_code == 2
    assert "variant 'noop' changes nothing" in res.output


def test_ngram_overlap_finds_contamination():
    text = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing matches"
    doc, h = ngram_hashes([text, "nothing in common here at all"], 13)
    assert set(doc.tolist()) == {0} and len(h) == len(text.split()) - 12
    _, h2 = ngram_hashes(["prefix words " + text + " suffix"], 13)
    assert np.isin(h, h2).all()
    _, h3 = ngram_hashes([text.replace("boxing", "chess")], 13)
    assert np.isin(h, h3).tolist() == [True, True, False, False]  # the last two hold "boxing"


@pytest.mark.slow
def test_ablation_end_to_end(tmp_path, prefect_server):
    """Two variants of a small corpus through a tiny proxy pretrain, compared on one held-out set."""
    import duckdb

    from flows.ablate import ablate_flow
    from pipeline.dataset import Dataset
    from pipeline.sql import query

    docs = stdlib_docstrings(["email.message", "logging", "typing", "subprocess", "shutil", "argparse"])
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs, "d")
    base = [
        f'ingest.sources=[{{"path": "{corpus}", "id_field": "id"}}]',
        "tokenize.tokenizer=char",
        "tokenize.seq_len=64",
        "tokenize.val_fraction=0.25",
        "pretrain.max_steps=4",
        "pretrain.context_len=32",
    ]
    root = tmp_path / "data"
    result = ablate_flow(
        variants=[{"name": "strict", "overrides": ["filter.gopher_quality.min_words=40"]}],
        until="pretrain",
        config_path="builtin-corpus",
        base_overrides=base,
        data_dir=str(root),
        heldout_docs=50,
    )
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"baseline", "strict"}
    assert 0 < rows["strict"]["docs_train"] < rows["baseline"]["docs_train"]
    assert result["heldout"]["docs"] > 0
    for r in rows.values():
        assert r["heldout_bits_per_byte"] > 0 and r["heldout_word_perplexity"] > 1
    # Shared stages ran once; each run's own stages once per run.
    _, counts = query(root, "SELECT stage, count(DISTINCT fingerprint) FROM stage_runs GROUP BY 1 ORDER BY 1")
    counts = dict(counts)
    assert counts["ingest"] == counts["dedup"] == counts["annotate"] == 1
    assert counts["labeled"] == 1
    assert counts["filter"] == counts["decontaminate"] == counts["tokenize"] == counts["pretrain"] == 2
    # The held-out texts: in no run's training split, each shares no 13-gram with any training text.
    held = duckdb.connect().execute(f"SELECT id, text FROM '{result['dir']}/heldout.parquet'").fetchall()
    assert len(held) == result["heldout"]["docs"]
    for row in result["rows"]:
        tok = Dataset(root / "datasets" / "tokenize" / row["tokenize"])
        inp = Dataset(root / tok.manifest["inputs"][0]["path"])
        hit, _ = contaminated([t for _, t in held], [(inp, tok)], 13)
        assert not hit.any()
    # Queryable in `tokenmill sql`, and shown by the report.
    _, n = query(root, "SELECT count(*), count(DISTINCT variant) FROM ablations")
    assert n == [(2, 2)]
    report = (root / "reports" / "ablations" / result["id"] / "report.md").read_text()
    assert "strict" in report and "Held-out set" in report
    assert (
        json.loads((root / "reports" / "ablations" / result["id"] / "ablation.json").read_text())["id"]
        == result["id"]
    )
