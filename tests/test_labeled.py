"""Labeled-data stage: every format, field mapping, label ids, stratified splits, rejects."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import ConfigError
from pipeline.labeled.config import LabeledConfig, LabeledSourceConfig
from pipeline.labeled.stage import LabeledStage, label_map
from pipeline.stage import run_stage


def table(res, view="data") -> list[dict]:
    return pq.read_table(res.path / view).to_pylist()


def run(root, *sources, **cfg):
    return run_stage(LabeledStage(), LabeledConfig(sources=list(sources), **cfg), root, {})


def test_tsv_with_header_keeps_quotes_as_text(tmp_path):
    # A stray double quote must not swallow the following lines (csv's default quoting would).
    p = tmp_path / "s.tsv"
    p.write_text('reviews\tsentiment\n" Bad start.\t0\nGood film "really".\t1\nFine.\t1\n')
    res = run(
        tmp_path,
        LabeledSourceConfig(path=str(p), text_field="reviews", label_field="sentiment"),
        test_fraction=0,
        val_fraction=0,
    )
    got = sorted((r["text"], r["label"], r["label_id"]) for r in table(res))
    assert got == [('" Bad start.', "0", 0), ("Fine.", "1", 1), ('Good film "really".', "1", 1)]
    assert label_map(res.dataset.manifest) == ["0", "1"]


def test_headerless_label_first_txt_and_csv_with_quotes(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("pos\tlovely day\nneg\tawful day\n")
    b = tmp_path / "b.csv"
    b.write_text('text,label\n"hello, world",pos\n')
    res = run(
        tmp_path,
        LabeledSourceConfig(path=str(a), header=False, columns=["label", "text"]),
        LabeledSourceConfig(path=str(b)),
        test_fraction=0,
        val_fraction=0,
    )
    assert sorted((r["text"], r["label"]) for r in table(res)) == [
        ("awful day", "neg"),
        ("hello, world", "pos"),
        ("lovely day", "pos"),
    ]
    assert {r["source"] for r in table(res)} == {"a", "b"}


def test_jsonl_parquet_and_hf_with_field_mapping(tmp_path):
    j = tmp_path / "x.jsonl"
    j.write_text(json.dumps({"body": "one", "y": 1}) + "\n" + json.dumps({"body": "two", "y": 2.0}) + "\n")
    q = tmp_path / "x.parquet"
    pq.write_table(pa.table({"body": ["three"], "y": [1]}), q)
    h = tmp_path / "h.jsonl"
    h.write_text(json.dumps({"body": "four", "y": 2}) + "\n")
    res = run(
        tmp_path,
        LabeledSourceConfig(path=str(j), text_field="body", label_field="y"),
        LabeledSourceConfig(path=str(q), text_field="body", label_field="y"),
        LabeledSourceConfig(
            format="hf", hf_name="json", data_files=[str(h)], text_field="body", label_field="y"
        ),
        test_fraction=0,
        val_fraction=0,
    )
    assert sorted((r["text"], r["label"]) for r in table(res)) == [
        ("four", "2"),
        ("one", "1"),
        ("three", "1"),
        ("two", "2"),
    ]


def test_bad_rows_go_to_rejects_with_reasons(tmp_path):
    p = tmp_path / "x.jsonl"
    lines = [
        {"text": "fine", "label": "a"},
        {"text": "", "label": "a"},  # empty text
        {"label": "a"},  # missing text
        {"text": "no label"},  # missing label
        {"text": "odd label", "label": "zzz"},  # not in `labels`
        {"text": "fine", "label": "a"},  # exact repeat
        {"text": 5, "label": "a"},  # not a string
    ]
    p.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{broken\n")
    res = run(tmp_path, LabeledSourceConfig(path=str(p)), labels=["a", "b"], test_fraction=0, val_fraction=0)
    assert res.counts["rows_in"] == 8 and res.counts["rows_out"] == 1
    assert res.counts["rejected_by_reason"] == {
        "labeled.duplicate": 1,
        "labeled.empty_text": 1,
        "labeled.invalid_json": 1,
        "labeled.missing_label": 1,
        "labeled.missing_text": 1,
        "labeled.text_not_string": 1,
        "labeled.unknown_label": 1,
    }
    rej = {r["reason"]: r for r in table(res, "rejects")}
    assert rej["labeled.unknown_label"]["value"] == "zzz"
    assert rej["labeled.duplicate"]["duplicate_of"] == table(res)[0]["id"]
    assert label_map(res.dataset.manifest) == ["a", "b"]  # configured labels keep their ids even when unseen


def test_stratified_seeded_split_and_cap(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(
        "".join(
            json.dumps({"text": f"t{i}", "label": "big" if i % 4 else "small"}) + "\n" for i in range(400)
        )
    )
    src = LabeledSourceConfig(path=str(p))
    res = run(tmp_path, src, test_fraction=0.2, val_fraction=0.1, seed=1)
    counts = Counter((r["label"], r["split"]) for r in table(res))
    assert counts == {
        ("big", "test"): 60,
        ("big", "validation"): 30,
        ("big", "train"): 210,
        ("small", "test"): 20,
        ("small", "validation"): 10,
        ("small", "train"): 70,
    }
    again = run(tmp_path / "b", src, test_fraction=0.2, val_fraction=0.1, seed=1)
    assert [s["sha256"] for s in again.dataset.manifest["shards"]] == [
        s["sha256"] for s in res.dataset.manifest["shards"]
    ]
    other = run(tmp_path, src, test_fraction=0.2, val_fraction=0.1, seed=2)
    assert {r["id"] for r in table(other) if r["split"] == "test"} != {
        r["id"] for r in table(res) if r["split"] == "test"
    }
    capped = run(tmp_path, src, max_per_label=50)
    assert Counter(r["label"] for r in table(capped)) == {"big": 50, "small": 50}
    assert capped.counts["rejected_by_reason"] == {"labeled.over_max_per_label": 300}


def test_given_split_is_kept(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(
        "".join(
            json.dumps({"text": f"t{i}", "label": "a", "part": ["train", "dev", "test", "other"][i % 4]})
            + "\n"
            for i in range(8)
        )
    )
    res = run(tmp_path, LabeledSourceConfig(path=str(p), split_field="part"))
    assert Counter(r["split"] for r in table(res)) == {"train": 2, "validation": 2, "test": 2}
    assert res.counts["rejected_by_reason"] == {"labeled.unknown_split": 2}


def test_instruct_rows(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"q": "Say hi", "a": "hi"}) + "\n" + json.dumps({"q": "Say bye"}) + "\n")
    res = run(
        tmp_path,
        LabeledSourceConfig(path=str(p), prompt_field="q", response_field="a"),
        task="instruct",
        test_fraction=0,
        val_fraction=0,
    )
    assert [(r["text"], r["response"], r["label"]) for r in table(res)] == [("Say hi", "hi", None)]
    assert res.counts["rejected_by_reason"] == {"labeled.missing_response": 1}


def test_default_task_is_stdlib_packages(tmp_path):
    res = run_stage(LabeledStage(), LabeledConfig(), tmp_path, {})
    labels = label_map(res.dataset.manifest)
    assert labels == sorted(["asyncio", "email", "logging", "tkinter", "unittest", "xml"])
    per = {x["label"]: x for x in res.dataset.manifest["stats"]["labels"]}
    assert all(per[lab]["train"] > 50 and per[lab]["test"] > 10 for lab in labels)
    row = next(r for r in table(res) if r["label"] == "asyncio")
    assert row["source_file"] == "default" and row["source"] == "stdlib-packages" and row["text"]


def test_default_fluency_task_shuffles_half_the_docstrings(tmp_path):
    from pipeline.labeled.config import DefaultTaskConfig
    from pipeline.labeled.readers import read_default
    from pipeline.sources.builtin import docstrings, module_name, stdlib_files

    task = DefaultTaskConfig(kind="fluency", packages=["email"], fluency_words=20)
    res = run_stage(LabeledStage(), LabeledConfig(default_task=task), tmp_path, {})
    assert label_map(res.dataset.manifest) == ["natural", "shuffled"]
    rows = table(res)
    counts = Counter(r["label"] for r in rows)
    assert counts["natural"] > 100 and counts["shuffled"] > 100
    assert 0.4 < counts["shuffled"] / len(rows) < 0.6
    files = [f for f in stdlib_files() if module_name(f).split(".")[0] == "email"]
    opening = {" ".join(d["text"].split()[:20]) for d in docstrings(files, 40)}
    for r in rows:
        words = r["text"].split(" ")
        assert 8 <= len(words) <= 20 and "\n" not in r["text"]
        if r["label"] == "natural":
            assert r["text"] in opening
        else:  # the same words as some docstring's opening, in another order
            assert r["text"] not in opening
            assert any(
                sorted(o.split(" ")) == sorted(words) for o in opening if len(o.split(" ")) == len(words)
            )
    # the same labels and texts on every run
    again = [(rec["text"], rec["label"]) for _, rec in read_default(task)]
    assert sorted(again) == sorted((r["text"], r["label"]) for r in rows)


def test_missing_files_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="matches no files"):
        run(tmp_path, LabeledSourceConfig(path=str(tmp_path / "nope*.tsv")))


def test_sentiment_corpus(shared_corpora, tmp_path):
    src = LabeledSourceConfig(
        path=str(shared_corpora / "sentiment" / "*.txt"), text_field="reviews", label_field="sentiment"
    )
    res = run(tmp_path, src)
    assert res.counts["rows_in"] == 3000
    assert res.counts["rows_out"] + res.counts["rejected_by_reason"].get("labeled.duplicate", 0) == 3000
    assert set(res.counts["rejected_by_reason"]) <= {"labeled.duplicate"}


def test_make_run_profile_uses_the_fluency_task_with_the_lp_ft_head():
    from pipeline.config import load_config
    from pipeline.configs import bundled

    cfg = load_config(bundled("builtin-corpus"))
    assert cfg.labeled.default_task.kind == "fluency"
    assert cfg.finetune.lm_score and cfg.finetune.probe_l2 is not None
    assert cfg.evaluate.curve.seeds >= 3
