"""Decontaminate stage: planted copies of evaluation texts are found, clean text is kept."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import Dataset
from pipeline.decontaminate.config import DecontaminateConfig, EvalSetConfig
from pipeline.decontaminate.ngrams import EvalIndex, search, text_words
from pipeline.decontaminate.stage import DecontaminateStage
from pipeline.dedup.config import NormalizeConfig
from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.labeled.config import LabeledConfig, LabeledSourceConfig
from pipeline.labeled.stage import LabeledStage
from pipeline.sources.builtin import docstrings, module_name, stdlib_files
from pipeline.stage import run_stage

REPO = Path(__file__).resolve().parents[1]


def real_docstrings(packages: tuple[str, ...], min_chars: int = 40) -> list[dict]:
    """Docstrings of a few standard-library packages, labeled by package (real English text)."""
    files = [f for f in stdlib_files() if module_name(f).split(".")[0] in packages]
    return [{"text": d["text"], "label": d["package"]} for d in docstrings(files, min_chars)]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> tuple[Path, Dataset, list[dict]]:
    root = tmp_path_factory.mktemp("decon")
    rows = real_docstrings(("json", "csv", "zipfile"))
    path = root / "labeled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lab = run_stage(LabeledStage(), LabeledConfig(sources=[LabeledSourceConfig(path=str(path))]), root, {})
    published = pq.read_table(lab.data_path).to_pylist()
    return root, lab.dataset, published


def words_of(text: str) -> list[str]:
    """Words as the stage folds them: runs of letters and digits, lower-cased."""
    return re.findall(r"[^\W_]+", text.lower())


def overlaps(doc: str, evals: list[str], n: int = 13, min_words: int = 3) -> bool:
    """A plain-Python reference of the rule, with sets of word tuples (fine for a test)."""
    words = words_of(doc)
    grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
    for e in map(words_of, evals):
        if len(e) >= n and grams & {tuple(e[i : i + n]) for i in range(len(e) - n + 1)}:
            return True
        if min_words <= len(e) < n and any(words[i : i + len(e)] == e for i in range(len(words))):
            return True
        if 0 < len(e) < min_words and words == e:
            return True
    return False


def near_copies(row: dict, rng: np.random.Generator) -> dict[str, str]:
    """Ways a test text turns up in crawled pages: verbatim, inside a page, re-cased, re-punctuated,
    re-wrapped, with a word changed, or cut to its middle 13 words."""
    text = row["text"]
    words = words_of(text)
    out = {
        "copy": text,
        "embedded": "Posted by admin in Python tips.\n\n" + text + "\n\nShare this: Twitter, Facebook.",
        "upper": text.upper(),
        "punct": " ".join(w + rng.choice([",", ";", " -", "!", ""]) for w in words),
        "wrapped": "\n".join(" ".join(words[i : i + 5]) for i in range(0, len(words), 5)),
    }
    if len(words) >= 30:
        changed = list(words)
        changed[len(words) // 2] = "zzzunrelatedword"  # a 13-gram on either side survives
        out["one_word_changed"] = "Quote: " + " ".join(changed)
        mid = len(words) // 2 - 6
        out["middle_13"] = "As the docs put it, " + " ".join(words[mid : mid + 13]) + " and so on."
    return out


def test_planted_copies_and_near_copies_are_all_rejected_with_their_eval_id(labeled, tmp_path):
    root, lab, published = labeled
    rng = np.random.default_rng(0)
    test = [r for r in published if r["split"] == "test"]
    val = [r for r in published if r["split"] == "validation"]
    train = [r for r in published if r["split"] == "train"]
    long_tests = [r for r in test if len(words_of(r["text"])) >= 30][:8]
    short_tests = [r for r in test if 3 <= len(words_of(r["text"])) < 13][:4]
    assert len(long_tests) == 8 and short_tests, "the real sample has long and short test texts"
    planted: dict[str, tuple[str, str]] = {}  # doc id -> (eval set, eval id)
    docs = []
    for i, row in enumerate(long_tests + short_tests):
        for kind, text in near_copies(row, rng).items():
            doc_id = f"test{i}-{kind}"
            planted[doc_id] = ("labeled.test", row["id"])
            docs.append({"id": doc_id, "text": text})
    for i, row in enumerate(val[:3]):
        planted[f"val{i}"] = ("labeled.validation", row["id"])
        docs.append({"id": f"val{i}", "text": "Seen on a forum: " + row["text"].lower()})
    # Training texts are not evaluation texts, but docstrings share boilerplate: the ones that do
    # share 13 words with a validation or test text are contaminated, by the reference rule too.
    evals = [r["text"] for r in test + val]
    clean = [{"id": f"train{i}", "text": r["text"]} for i, r in enumerate(train[:120])]
    for d in clean:
        if overlaps(d["text"], evals):
            planted[d["id"]] = ("?", "?")
    clean += [
        {"id": "prose", "text": "The quick brown fox jumps over the lazy dog near the river bank today."}
    ]
    path = tmp_path / "pretraining.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs + clean))
    docs_ds = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(path))]), root, {}).dataset

    res = run_stage(DecontaminateStage(), DecontaminateConfig(), root, {"filter": docs_ds, "labeled": lab})

    rejects = pq.read_table(res.path / "rejects").to_pylist()
    by_doc = {r["id"]: r for r in rejects}
    assert set(by_doc) == set(planted), sorted(set(planted) ^ set(by_doc))
    assert any(s == "?" for s, _ in planted.values()), "the sample has train texts that overlap"
    for doc_id, (eval_set, eval_id) in planted.items():
        r = by_doc[doc_id]
        if eval_set == "?":  # found by the reference rule: any eval text will do
            eval_set, eval_id = json.loads(r["detail"])["eval_set"], r["duplicate_of"]
        detail = json.loads(r["detail"])
        assert r["reason"] == f"decontaminate.{eval_set}", doc_id
        assert r["duplicate_of"] == detail["eval_id"] == eval_id, doc_id
        assert detail["eval_set"] == eval_set
        # The overlapping words are the eval text's own (folded) words, n of them or the whole text.
        ngram = detail["ngram"].split()
        eval_words = [w.lower() for w in words_of(next(p["text"] for p in published if p["id"] == eval_id))]
        assert ngram == r["value"].split() and len(ngram) == detail["n"]
        assert any(eval_words[i : i + len(ngram)] == ngram for i in range(len(eval_words))), doc_id
    kept = pq.read_table(res.data_path).column("id").to_pylist()
    assert len(kept) == len(docs) + len(clean) - len(planted) > 40
    stats = res.stats["eval_sets"]
    by_reason = res.counts["rejected_by_reason"]
    assert by_reason["decontaminate.labeled.test"] >= sum(
        1 for s, _ in planted.values() if s == "labeled.test"
    )
    assert sum(by_reason.values()) == len(planted)
    assert stats["labeled.test"]["docs_rejected"] == res.stats["contaminated"]["labeled.test"]
    assert stats["labeled.test"]["texts_found"] >= len(long_tests) + len(short_tests)
    # Short eval texts are matched whole, and the statistics say how many there are.
    assert stats["labeled.test"]["matched_by"]["whole_text"] >= len(short_tests)
    assert stats["labeled.test"]["texts"] == len(test)
    assert any(json.loads(r["detail"])["match"] == "whole_text" for r in rejects)


def test_eval_sets_are_read_like_ingest_sources_and_name_their_reason(labeled, tmp_path):
    root, lab, _ = labeled
    eval_csv = tmp_path / "quiz.csv"
    question = "Which module in the standard library serialises Python objects into a portable text format?"
    eval_csv.write_text('qid,question\nq1,"' + question + '"\nq2,"Hi"\n')
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        json.dumps({"text": "Trivia night! " + question + " Answer below."})
        + "\n"
        + json.dumps({"text": "hi"})
        + "\n"
        + json.dumps({"text": "Hi there, said the cat, and everyone said hi back."})
        + "\n"
    )
    docs_ds = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(docs))]), root, {}).dataset
    cfg = DecontaminateConfig(
        eval_sets=[EvalSetConfig(path=str(eval_csv), text_field="question", id_field="qid")]
    )
    res = run_stage(DecontaminateStage(), cfg, root, {"filter": docs_ds, "labeled": lab})
    rejects = pq.read_table(res.path / "rejects").to_pylist()
    assert sorted((r["reason"], r["duplicate_of"]) for r in rejects) == [
        ("decontaminate.quiz", "q1"),
        ("decontaminate.quiz", "q2"),  # "hi" alone is under min_words: only an exact document matches
    ]
    assert [json.loads(r["detail"])["match"] for r in sorted(rejects, key=lambda r: r["duplicate_of"])] == [
        "ngram",
        "exact_document",
    ]
    quiz = res.stats["eval_sets"]["quiz"]
    assert quiz["texts"] == 2 and quiz["matched_by"] == {"ngram": 1, "whole_text": 0, "exact_document": 1}
    assert quiz["docs_rejected"] == 2 and res.counts["rows_out"] == 1


def test_a_shorter_n_catches_short_texts_by_their_ngrams(tmp_path):
    words = "the battery lasts two full days and the screen is bright even outdoors".split()
    texts = [(0, "e1", " ".join(words))]
    norm = NormalizeConfig()
    for n, expect in ((13, 1), (8, 1), (20, 1)):
        index, counts = EvalIndex.build(texts, ["set"], [n], 3, norm)
        assert counts[0]["matched_by"]["ngram" if len(words) >= n else "whole_text"] == 1
        doc = "Review: " + " ".join(words[2:10]) + " but it is heavy."  # 8 of the 13 words
        w, h = text_words(pa.array([doc], pa.large_string()), norm)
        assert len(search(index, w, h)) == (1 if n <= 8 else 0) * expect


def test_a_key_collision_without_equal_words_is_not_a_match():
    norm = NormalizeConfig()
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    index, _ = EvalIndex.build([(0, "e", text)], ["s"], [13], 3, norm)
    w, h = text_words(pa.array(["x " + text], pa.large_string()), norm)
    assert len(search(index, w, h)) == 1
    index.words = index.words + np.uint64(1)  # same keys, different words: a 64-bit collision
    assert search(index, w, h) == []


def test_missing_or_empty_eval_sets_are_configuration_errors(labeled, tmp_path):
    root, lab, _ = labeled
    docs = tmp_path / "d.jsonl"
    docs.write_text(json.dumps({"text": "some text"}) + "\n")
    docs_ds = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(docs))]), root, {}).dataset
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"question": "   "}) + "\n" + json.dumps({"other": "x"}) + "\n")
    for path, message in (
        (tmp_path / "nope.jsonl", "matches no files"),
        (empty, "is empty"),
        (blank, "holds no evaluation text"),
    ):
        cfg = DecontaminateConfig(eval_sets=[EvalSetConfig(path=str(path), text_field="question")])
        with pytest.raises(ConfigError, match=message):
            run_stage(DecontaminateStage(), cfg, root, {"filter": docs_ds, "labeled": lab})


@pytest.mark.slow
def test_cli_exits_2_with_one_line_for_a_missing_eval_set(cli_env, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "decontaminate",
            "--data-dir",
            str(tmp_path / "data"),
            "--set",
            'ingest.sources=[{"path": "' + str(REPO / "README.md") + '", "format": "text"}]',
            "--set",
            'decontaminate.eval_sets=[{"path": "' + str(tmp_path / "missing.jsonl") + '"}]',
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "missing.jsonl" in errors[0] and "matches no files" in errors[0]
