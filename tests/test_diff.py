"""`tokenmill diff`: two versions of a stage compared, counts exact on a constructed pair."""

from __future__ import annotations

import json

import pytest
from conftest import stdlib_docstrings
from typer.testing import CliRunner

from flows.cli import app
from pipeline.diff import diff_versions, render_markdown
from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import run_stage
from pipeline.tokenize import TokenizeConfig, TokenizeStage

DOCS = stdlib_docstrings(["email.message", "logging"])[:16]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A: documents 0-9 and one broken line; B: documents 4-13 (document 4 edited) and two empty texts."""
    tmp = tmp_path_factory.mktemp("diff")
    a = tmp / "a.jsonl"
    a.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": DOCS[i]}) + "\n" for i in range(10)) + "{not json\n"
    )
    b = tmp / "b.jsonl"
    lines = [
        json.dumps({"id": f"d{i}", "text": DOCS[i] + (" Edited." if i == 4 else "")}) for i in range(4, 14)
    ]
    lines += [json.dumps({"id": "e1", "text": "  "}), json.dumps({"id": "e2", "text": ""})]
    b.write_text("\n".join(lines) + "\n")
    root = tmp / "root"
    va = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(a), name="alpha")]), root, {})
    vb = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(b), name="beta")]), root, {})
    return root, va.dataset, vb.dataset


def test_counts_are_exact_on_a_constructed_pair(pair):
    _, a, b = pair
    d = diff_versions(a, b)
    assert (d["rows_in_a"], d["rows_out_a"], d["rows_in_b"], d["rows_out_b"]) == (11, 10, 12, 10)
    assert d["rejects_by_reason_a"] == {"ingest.invalid_json": 1}
    assert d["rejects_by_reason_b"] == {"ingest.empty_text": 2}
    assert (d["only_in_a"], d["only_in_b"], d["in_both"], d["text_changed"]) == (4, 4, 6, 1)
    assert d["only_in_a_by_source"] == {"alpha": 4} and d["only_in_b_by_source"] == {"beta": 4}
    assert {s["id"] for s in d["samples_only_in_a"]} <= {"d0", "d1", "d2", "d3"}
    assert len(d["samples_only_in_b"]) == 3
    assert {
        "key": "sources.0.path",
        "a": str(a.manifest["config"]["sources"][0]["path"]),
        "b": str(b.manifest["config"]["sources"][0]["path"]),
    } in d["config_changes"]
    text = render_markdown(d)
    assert "only in A: **4**" in text and "ingest.empty_text" in text


def test_cli_json_has_the_interface_keys(pair):
    root, a, b = pair
    res = CliRunner().invoke(
        app, ["diff", a.fingerprint[:10], b.fingerprint, "--json", "--data-dir", str(root)]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in (
        "rows_out_a",
        "rows_out_b",
        "only_in_a",
        "only_in_b",
        "rejects_by_reason_a",
        "rejects_by_reason_b",
    ):
        assert key in d
    assert (d["only_in_a"], d["only_in_b"]) == (4, 4)
    res = CliRunner().invoke(app, ["diff", a.fingerprint, b.fingerprint, "--data-dir", str(root)])
    assert res.exit_code == 0 and "Only in B" in res.stdout


def test_tokens_per_source_for_tokenize_versions(pair):
    root, a, b = pair
    cfg = TokenizeConfig(tokenizer="char", seq_len=32, val_fraction=0.0)
    ta = run_stage(TokenizeStage(), cfg, root, {"decontaminate": a}).dataset
    tb = run_stage(TokenizeStage(), cfg, root, {"decontaminate": b}).dataset
    d = diff_versions(ta, tb)
    tok = d["tokens"]
    assert tok["total_a"] == ta.manifest["totals"]["tokens_train"] + ta.manifest["totals"]["tokens_val"]
    assert tok["total_b"] == tb.manifest["totals"]["tokens_train"]
    by = {r["source"]: r for r in tok["by_source"]}
    assert by["alpha"]["a"] == tok["total_a"] and by["alpha"]["b"] == 0
    assert by["beta"]["b"] == tok["total_b"]
    assert (d["only_in_a"], d["only_in_b"]) == (4, 4)


def test_different_stages_are_refused(pair):
    root, a, _ = pair
    t = run_stage(
        TokenizeStage(), TokenizeConfig(tokenizer="char", seq_len=32), root, {"decontaminate": a}
    ).dataset
    with pytest.raises(ConfigError, match="two versions of one stage"):
        diff_versions(a, t)
    res = CliRunner().invoke(app, ["diff", a.fingerprint, t.fingerprint, "--data-dir", str(root)])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["diff", "nosuch", a.fingerprint, "--data-dir", str(root)])
    assert res.exit_code == 2
