"""The benchmarks' stress inputs (benchmarks/variants.py): each is what its name says, every time."""

import json

import pytest

from benchmarks.variants import CORPORA, SHORT_MAX, VARIANTS, build_variants, ptb_line


def read(path):
    return [json.loads(line) for line in path.open(encoding="utf-8")]


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    if not CORPORA.is_dir():
        pytest.skip(f"{CORPORA} is absent: the shared corpora are optional")
    return {name: read(path) for name, path in build_variants(tmp_path_factory.mktemp("variants")).items()}


def test_ptb_splits_clitics_and_punctuation_but_keeps_abbreviations():
    assert ptb_line("He said, \"I don't know what it's about.\" They won't!") == (
        "He said , `` I do n't know what it 's about . '' They wo n't !"
    )
    assert ptb_line("Mr. Smith paid $3.50 (or 5.3%) in the U.S. Done.") == (
        "Mr. Smith paid $ 3.50 ( or 5.3 % ) in the U.S. Done ."
    )


@pytest.mark.slow
def test_every_variant_is_what_its_name_says(variants):
    assert set(variants) == set(VARIANTS)
    for name, docs in variants.items():
        assert docs and all(d["text"].strip() and d["variant"] == name and d["origin"] for d in docs), name
        assert len({d["id"] for d in docs}) == len(docs), name
    assert len(variants["web_100"]) == 100
    assert not any(c.isupper() for d in variants["lowercase"] for c in d["text"])
    assert not any("\n" in d["text"] for d in variants["no_newlines"])
    ptb = " ".join(d["text"] for d in variants["ptb"])
    assert " n't " in ptb and " 's " in ptb and "don't" not in ptb and " , " in ptb
    sizes = [len(d["text"]) for d in variants["short_docs"]]
    assert max(sizes) <= SHORT_MAX and len(variants["short_docs"]) > 2 * len(variants["web"])
    assert sum(1000 <= s <= SHORT_MAX for s in sizes) > 0.7 * len(sizes)
    page = variants["boilerplate"][0]["text"]
    assert variants["web"][0]["text"].strip().split("\n")[0] in page and "©" in page
    assert sum("cookies" in d["text"] for d in variants["boilerplate"]) > len(variants["boilerplate"]) / 2
    assert (
        sum(">>> " in d["text"] or "```" in d["text"] for d in variants["code"]) > len(variants["code"]) / 2
    )
    assert len({d["origin"].split(":")[1] for d in variants["multilingual"]}) >= 20


@pytest.mark.slow
def test_variants_are_byte_identical_on_every_build(variants, tmp_path):
    names = ["web_100", "ptb", "short_docs", "boilerplate", "multilingual"]
    again = build_variants(tmp_path, names)
    for name in names:
        assert read(again[name]) == variants[name]
        assert again[name].read_bytes() == build_variants(tmp_path / "b", [name])[name].read_bytes()
