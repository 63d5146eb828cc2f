"""Source mixing in tokenize: shares, budgets, epochs, warnings and errors (no Prefect)."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from conftest import stdlib_docstrings, write_jsonl

from pipeline.dataset import Dataset
from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import run_stage
from pipeline.tokenize import TokenizeConfig, TokenizeStage

TEXTS = {
    "logging": stdlib_docstrings(["email.message", "logging", "typing"]),  # the largest source
    "process": stdlib_docstrings(["subprocess", "shutil"]),
    "asyncio": stdlib_docstrings(["asyncio.tasks", "asyncio.events", "unittest.case"]),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Dataset, object]:
    tmp = tmp_path_factory.mktemp("mix")
    sources = [
        SourceConfig(path=str(write_jsonl(tmp / f"{name}.jsonl", texts, name)), name=name, id_field="id")
        for name, texts in TEXTS.items()
    ]
    ds = run_stage(IngestStage(), IngestConfig(sources=sources), tmp / "root", {}).dataset
    return ds, tmp


def tokenize(corpus, **mix) -> Dataset:
    ds, tmp = corpus
    cfg = TokenizeConfig(tokenizer="char", seq_len=64, val_fraction=0.1, mix=mix or None)
    return run_stage(TokenizeStage(), cfg, tmp / "root", {"decontaminate": ds}).dataset


def test_weights_give_exact_token_shares(corpus):
    weights = {"logging": 0.2, "process": 0.5, "asyncio": 0.3}
    out = tokenize(corpus, weights=weights)
    mix = out.manifest["stats"]["mix"]
    assert mix["warnings"] == [] and mix["notes"] == []
    for s, w in weights.items():
        assert mix["sources"][s]["share"] == pytest.approx(w, rel=0.01), (s, mix["sources"][s])
    # The small sources are upsampled by whole epochs plus a partial one; the large one downsampled.
    assert mix["sources"]["process"]["epochs"] > 1 > mix["sources"]["logging"]["epochs"]
    assert mix["sources"]["process"]["whole_epochs"] >= 1
    # Before: the train split's own counts; after: what the packed train stream holds.
    by_source = out.manifest["stats"]["tokens_by_source"]
    for s in weights:
        assert mix["sources"][s]["tokens_before"] == by_source[s]["train"]
    totals = out.manifest["totals"]
    packed = (
        totals["sequences_train"] * totals["seq_len"] + 1 + out.manifest["stats"]["tokens_dropped"]["train"]
    )
    docs = (
        duckdb.connect()
        .execute(
            "SELECT count(*) FROM read_parquet($f) WHERE split = 'train'",
            {"f": [str(p) for p in out.shard_paths("docs")]},
        )
        .fetchone()[0]
    )
    assert totals["tokens_train_mixed"] == mix["tokens_after"]
    assert packed > mix["tokens_after"] > packed - docs * 5  # plus one end-of-text per document copy


@pytest.mark.slow
def test_mixed_stream_holds_the_requested_proportions(corpus, tmp_path):
    """End to end through the packed data: one source in upper case, one in lower case, so each
    letter in the packed train rows tells its source."""
    base = stdlib_docstrings(["email.message", "logging"])
    lower = write_jsonl(tmp_path / "lower.jsonl", [t.lower() for t in base], "lo")
    upper = write_jsonl(tmp_path / "upper.jsonl", [t.upper() for t in base[::-1]], "up")
    sources = [SourceConfig(path=str(p), name=p.stem, id_field="id") for p in (lower, upper)]
    ds = run_stage(IngestStage(), IngestConfig(sources=sources), tmp_path / "root", {}).dataset
    cfg = TokenizeConfig(
        tokenizer="char", seq_len=64, val_fraction=0.1, mix={"weights": {"lower": 0.25, "upper": 0.75}}
    )
    out = run_stage(TokenizeStage(), cfg, tmp_path / "root", {"decontaminate": ds}).dataset
    vocab = __import__("json").loads((out.path / "tokenizer" / "tokenizer.json").read_text())["model"][
        "vocab"
    ]
    kind = np.zeros(max(vocab.values()) + 1, dtype=np.int8)
    for ch, i in vocab.items():
        kind[i] = 1 if ch.islower() else 2 if ch.isupper() else 0
    counts = np.zeros(3, np.int64)
    for batch in out.iter_batches(columns=["split", "input_ids"]):
        for split, ids in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            if split == "train":
                counts += np.bincount(kind[np.array(ids[1:])], minlength=3)
    # Both sources hold the same letters, so the letter shares follow the token shares.
    assert counts[2] / (counts[1] + counts[2]) == pytest.approx(0.75, abs=0.02)


def test_budgets_and_sources_left_alone(corpus):
    before = tokenize(corpus).manifest["stats"]["tokens_by_source"]
    budget = before["logging"]["train"] // 3
    mix = tokenize(corpus, budgets={"logging": budget}).manifest["stats"]["mix"]
    assert mix["sources"]["logging"]["tokens_after"] == pytest.approx(budget, rel=0.01)
    for s in ("process", "asyncio"):  # not named: kept once, whole
        assert mix["sources"][s]["tokens_after"] == before[s]["train"]
        assert mix["sources"][s]["epochs"] == 1.0


def test_weights_are_normalised_and_unnamed_sources_said(corpus):
    mix = tokenize(corpus, weights={"logging": 2, "process": 2}).manifest["stats"]["mix"]
    assert any("normalised" in n for n in mix["notes"])
    assert any("'asyncio' is not in mix.weights" in n for n in mix["notes"])
    assert mix["sources"]["asyncio"]["tokens_after"] == 0
    assert mix["sources"]["logging"]["share"] == pytest.approx(0.5, rel=0.01)


def test_too_few_tokens_warns_by_how_much(corpus):
    out = tokenize(corpus, weights={"logging": 0.1, "process": 0.8, "asyncio": 0.1}, max_epochs=2)
    mix = out.manifest["stats"]["mix"]
    process = mix["sources"]["process"]
    assert process["epochs"] == pytest.approx(2.0)  # capped
    warning = next(w for w in mix["warnings"] if "'process'" in w)
    assert "short by" in warning and "max_epochs 2" in warning
    assert process["share"] < 0.8
    assert "warning" in TokenizeStage().summary_markdown(out)


def test_unknown_source_is_a_clear_error(corpus):
    with pytest.raises(ConfigError, match=r"'web'.*its sources are 'asyncio', 'logging', 'process'"):
        tokenize(corpus, weights={"web": 1.0, "logging": 1.0})


def test_config_needs_one_of_weights_or_budgets():
    with pytest.raises(ValueError, match="exactly one of weights or budgets"):
        TokenizeConfig(mix={"max_epochs": 2})
    with pytest.raises(ValueError, match="at least one weight"):
        TokenizeConfig(mix={"weights": {"a": 0}})


@pytest.mark.slow
def test_mixing_is_deterministic(corpus, tmp_path):
    ds, _ = corpus
    cfg = TokenizeConfig(
        tokenizer="char", seq_len=64, mix={"weights": {"logging": 0.3, "process": 0.4, "asyncio": 0.3}}
    )
    a = run_stage(TokenizeStage(), cfg, tmp_path / "a", {"decontaminate": ds}).dataset
    b = run_stage(TokenizeStage(), cfg, tmp_path / "b", {"decontaminate": ds}).dataset
    assert a.manifest["views"]["data"] == b.manifest["views"]["data"]


def test_sources_survive_decontaminate(corpus):
    """Through the real DAG (filter -> decontaminate -> tokenize): decontaminate drops documents
    that copy evaluation texts and keeps every source name, so mixing still finds them."""
    import json

    from pipeline.decontaminate.config import DecontaminateConfig
    from pipeline.decontaminate.stage import DecontaminateStage
    from pipeline.labeled.config import LabeledConfig, LabeledSourceConfig
    from pipeline.labeled.stage import LabeledStage

    ds, tmp = corpus
    root = tmp / "root"
    planted = TEXTS["process"][:12]  # some land in labeled's test and val splits, the evaluation texts
    rows = [{"text": t, "label": "json"} for t in stdlib_docstrings(["json.decoder", "json.encoder"])]
    rows += [{"text": t, "label": "csv"} for t in stdlib_docstrings(["csv", "zipfile"])]
    rows += [{"text": t, "label": "csv"} for t in planted]
    path = tmp / "labeled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lab = run_stage(LabeledStage(), LabeledConfig(sources=[LabeledSourceConfig(path=str(path))]), root, {})
    clean = run_stage(
        DecontaminateStage(), DecontaminateConfig(), root, {"filter": ds, "labeled": lab.dataset}
    )
    assert clean.dataset.manifest["counts"]["rows_rejected"] >= 1
    kept = duckdb.connect().execute(
        "SELECT source, count(*) FROM read_parquet($f) GROUP BY 1 ORDER BY 1",
        {"f": [str(p) for p in clean.dataset.shard_paths("data")]},
    )
    assert [s for s, _ in kept.fetchall()] == ["asyncio", "logging", "process"]
    weights = {"logging": 0.2, "process": 0.5, "asyncio": 0.3}
    cfg = TokenizeConfig(tokenizer="char", seq_len=64, val_fraction=0.1, mix={"weights": weights})
    mix = run_stage(TokenizeStage(), cfg, root, {"decontaminate": clean.dataset}).dataset.manifest["stats"][
        "mix"
    ]
    for s, w in weights.items():
        assert mix["sources"][s]["share"] == pytest.approx(w, rel=0.01), (s, mix["sources"][s])
