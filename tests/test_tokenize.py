"""Tokenize: tokenizers (BPE, char, loaded), the packed and docs views, split, shuffle, rejects."""

import json
import re

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import normalizers

from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import plan, run_stage
from pipeline.tokenize import TokenizeConfig, TokenizeStage, load_tokenizer
from pipeline.tokenize.encode import find_duplicate_ids
from pipeline.tokenize.formats import is_val
from pipeline.tokenize.tokenizer import build_char, train_bpe

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
    "under",
    "pale",
    "moonlight",
    "and",
    "curious",
    "children",
    "count",
    "silver",
    "coins",
    "beside",
    "the",
    "old",
    "river",
    "bank",
]
UNICODE = ["naïve café — déjà vu", "東京と大阪の天気", "emoji 🚀 and maths ∑ x² ≤ ∞", "Ελληνικά κείμενα"]


def make_docs(n=160):
    """Varied documents, deterministic: different lengths, a few non-ASCII ones."""
    docs = []
    for i in range(n):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(5 + (i * 13) % 60)]
        text = f"Document {i}. " + " ".join(words) + "."
        if i % 10 == 0:
            text += " " + UNICODE[(i // 10) % len(UNICODE)]
        docs.append({"id": f"doc-{i:04d}", "text": text})
    return docs


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    return path


def ingest(root, path, **source):
    cfg = IngestConfig(sources=[SourceConfig(path=str(path), id_field="id", **source)])
    return run_stage(IngestStage(), cfg, root, {}).dataset


def tokenize(root, dataset, **cfg):
    base = {
        "vocab_size": 300,
        "seq_len": 16,
        "val_fraction": 0.2,
        "shard_sequences": 64,
        "row_group_rows": 32,
    }
    return run_stage(TokenizeStage(), TokenizeConfig(**{**base, **cfg}), root, {"decontaminate": dataset})


@pytest.fixture
def corpus(tmp_path):
    return ingest(tmp_path / "root", write_jsonl(tmp_path / "docs.jsonl", make_docs()))


def rows_of(path, split=None):
    t = pq.read_table(path)
    ids = t.column("input_ids").to_pylist()
    if split is not None:
        ids = [r for r, s in zip(ids, t.column("split").to_pylist()) if s == split]
    return ids


def expected_sequences(docs_view, split, seq_len, eot):
    """The sequences cut from the split's documents joined by end-of-text, in input order."""
    t = pq.read_table(docs_view)
    stream = []
    for ids, s in zip(t.column("input_ids").to_pylist(), t.column("split").to_pylist()):
        if s == split:
            stream += ids + [eot]
    n = max(0, (len(stream) - 1) // seq_len)
    return [stream[k * seq_len : k * seq_len + seq_len + 1] for k in range(n)]


# -- tokenizers -----------------------------------------------------------------------------------


def test_bpe_is_deterministic_lossless_and_round_trips(tmp_path):
    texts = [d["text"] for d in make_docs()]
    a = train_bpe([texts[:80], texts[80:]], vocab_size=300)
    b = train_bpe([texts[:80], texts[80:]], vocab_size=300)
    assert a.fingerprint == b.fingerprint and a.to_json() == b.to_json()
    assert a.kind == "bpe" and a.vocab_size <= 300 and a.eot_id == 0 and a.dtype == np.uint16
    for t in texts[:20] + UNICODE:
        assert a.decode(a.encode(t)) == t  # byte-level: every text survives
    # A document spelling the end-of-text token cannot inject a boundary.
    assert a.eot_id not in a.encode("end <|endoftext|> here")
    loaded = load_tokenizer(a.save(tmp_path / "tok"))
    assert loaded.fingerprint == a.fingerprint and loaded.eot_id == a.eot_id
    assert loaded.encode_batch(texts[:5]) == [a.encode(t) for t in texts[:5]]
    meta = json.loads((tmp_path / "tok" / "tokenizer_meta.json").read_text())
    assert {"kind", "vocab_size", "eot_token", "eot_id", "fingerprint"} <= set(meta)


def test_loading_again_reuses_the_parse_only_while_the_files_are_unchanged(tmp_path):
    texts = [d["text"] for d in make_docs()]
    d = train_bpe([texts], vocab_size=300).save(tmp_path / "tok")
    first, again = load_tokenizer(d), load_tokenizer(d)
    assert again.tokenizer is first.tokenizer and again.fingerprint == first.fingerprint
    again.info["source"] = "mine"  # a caller's notes stay its own
    assert "source" not in load_tokenizer(d).info
    # An edited tokenizer.json no longer matches its meta: parsed afresh, and refused.
    f = d / "tokenizer.json"
    f.write_text(f.read_text().replace('"dropout": null', '"dropout": 0.5'))
    with pytest.raises(ConfigError, match="does not match the fingerprint"):
        load_tokenizer(d)
    # A tokenizer.json without meta (a HF file) is serialized to get its fingerprint, as before.
    (d / "tokenizer_meta.json").unlink()
    assert load_tokenizer(d).fingerprint != first.fingerprint


def test_word_cache_size_changes_no_id():
    texts = [d["text"] for d in make_docs()] + UNICODE
    tok = train_bpe([texts], vocab_size=300)
    flat, lengths = tok.encode_arrays(texts)
    assert list(lengths) == [len(tok.encode(t)) for t in texts]
    assert flat.tolist() == [i for t in texts for i in tok.encode(t)]
    before = tok.to_json()
    for words in (1, 100_000):
        tok.set_word_cache(words)
        again, again_lengths = tok.encode_arrays(texts)
        assert np.array_equal(again, flat) and np.array_equal(again_lengths, lengths)
    assert tok.to_json() == before  # not part of the tokenizer's file or fingerprint


def test_char_tokenizer_numbers_characters_in_code_point_order():
    tok = build_char([["ba", "c\n"], ["a"]])
    assert tok.kind == "char" and tok.vocab_size == 6
    assert tok.encode("\nabc") == [0, 1, 2, 3]
    assert tok.eot_id == 4
    assert tok.encode("abz") == [1, 2, 5]  # an unseen character is <unk>
    assert tok.decode(tok.encode("cab\n")) == "cab\n"


def test_load_hf_directory_takes_eos_from_its_config(tmp_path):
    tok = build_char([["hello world"]], eot_token="</s>")
    d = tmp_path / "hf"
    d.mkdir()
    (d / "tokenizer.json").write_text(tok.to_json())
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    loaded = load_tokenizer(d)
    assert loaded.eot_token == "</s>" and loaded.eot_id == tok.eot_id
    assert load_tokenizer(d / "tokenizer.json").eot_token == "</s>"
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        load_tokenizer(d, eot_token="<|endoftext|>")
    with pytest.raises(ConfigError, match=r"no tokenizer\.json"):
        load_tokenizer(tmp_path / "nowhere")


# -- the stage --------------------------------------------------------------------------------------


def test_stage_writes_the_agreed_layout(tmp_path, corpus):
    res = tokenize(tmp_path / "root", corpus)
    ds = res.dataset
    m = ds.manifest
    totals = m["totals"]
    assert res.counts["rows_in"] == res.counts["rows_out"] == 160 and res.counts["rows_rejected"] == 0
    assert m["validation"]["success"] and {s["suite"] for s in m["validation"]["suites"]} == {
        "tokenize.data",
        "tokenize.docs",
    }

    # tokenizer/ and its meta agree with the manifest
    tok = load_tokenizer(ds.path / "tokenizer")
    assert tok.fingerprint == totals["tokenizer_fingerprint"] and tok.eot_id == totals["eot_id"]
    assert tok.vocab_size == totals["vocab_size"] <= 300

    # data/: shard names, types, exact lengths, row groups
    data_files = sorted(p.name for p in ds.view_path("data").glob("*.parquet"))
    assert all(re.fullmatch(r"(train|val)-\d{5}-\d{4}\.parquet", f) for f in data_files)
    assert sum(f.startswith("train-") for f in data_files) > 1  # several buckets at shard_sequences=64
    schema = pq.read_schema(ds.view_path("data") / data_files[0])
    assert (
        schema.field("input_ids").type == pa.list_(pa.uint16()) and schema.field("split").type == pa.string()
    )
    for f in data_files:
        pf = pq.ParquetFile(ds.view_path("data") / f)
        assert all(pf.metadata.row_group(g).num_rows <= 32 for g in range(pf.metadata.num_row_groups))
        split = f.split("-")[0]
        assert set(pf.read().column("split").to_pylist()) == {split}
    rows = rows_of(ds.view_path("data"))
    assert len(rows) == totals["sequences_train"] + totals["sequences_val"]
    assert {len(r) for r in rows} == {17} and max(max(r) for r in rows) < totals["vocab_size"]

    # docs/: one row per document, split by id hash, token counts add up
    docs = pq.read_table(ds.view_path("docs"))
    assert docs.schema.field("n_tokens").type == pa.int32()
    ids, splits = docs.column("id").to_pylist(), docs.column("split").to_pylist()
    assert sorted(ids) == sorted(d["id"] for d in make_docs())
    assert splits == ["val" if v else "train" for v in is_val(ids, 0.2)]
    assert 0 < totals["docs_val"] < totals["docs_train"]
    n_tok = docs.column("n_tokens").to_pylist()
    assert totals["tokens_train"] == sum(n for n, s in zip(n_tok, splits) if s == "train")
    assert totals["tokens_val"] == sum(n for n, s in zip(n_tok, splits) if s == "val")
    first = docs.column("input_ids")[0].as_py()
    assert tok.decode(first) == next(d["text"] for d in make_docs() if d["id"] == ids[0])

    # Packing loses nothing and the shuffle really mixes: same sequences, other order.
    for split in ("train", "val"):
        want = expected_sequences(ds.view_path("docs"), split, 16, tok.eot_id)
        got = rows_of(ds.view_path("data"), split)
        assert sorted(got) == sorted(want) and len(want) == totals[f"sequences_{split}"]
        if len(want) > 10:
            assert got != want

    # Any dataset tool opens the views.
    n = (
        duckdb.connect()
        .execute(f"SELECT count(*) FROM read_parquet('{ds.view_path('data')}/*.parquet')")
        .fetchone()[0]
    )
    assert n == len(rows)


def test_output_is_deterministic_and_seeded(tmp_path, corpus):
    a = tokenize(tmp_path / "a", corpus)
    b = tokenize(tmp_path / "b", corpus)
    assert a.fingerprint == b.fingerprint
    assert a.dataset.manifest["views"] == b.dataset.manifest["views"]  # same bytes (sha256 per shard)
    assert tokenize(tmp_path / "a", corpus).cached
    c = tokenize(tmp_path / "c", corpus, seed=7)
    assert c.dataset.manifest["views"]["docs"] == a.dataset.manifest["views"]["docs"]
    assert c.dataset.manifest["views"]["data"] != a.dataset.manifest["views"]["data"]
    assert sorted(rows_of(c.dataset.view_path("data"))) == sorted(rows_of(a.dataset.view_path("data")))
    # Smaller encode batches change nothing but the docs view's row groups.
    d = tokenize(tmp_path / "d", corpus, batch_bytes=300, batch_docs=7)
    assert d.dataset.manifest["views"]["data"] == a.dataset.manifest["views"]["data"]
    assert pq.read_table(d.dataset.view_path("docs")).equals(pq.read_table(a.dataset.view_path("docs")))


def test_duplicate_ids_and_empty_encodings_go_to_rejects(tmp_path):
    docs = make_docs(40)
    docs.insert(10, dict(docs[3]))  # the same id (and text) again
    docs.append({"id": "only-x", "text": "xxxx"})  # the tokenizer below normalizes it to nothing
    dataset = ingest(tmp_path / "root", write_jsonl(tmp_path / "d.jsonl", docs))
    tok = build_char([[d["text"] for d in docs]])
    tok.tokenizer.normalizer = normalizers.Replace("x", "")
    tok_dir = tmp_path / "mine"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text(tok.to_json())

    res = tokenize(tmp_path / "root", dataset, tokenizer="pretrained", tokenizer_path=str(tok_dir))
    assert res.counts["rows_in"] == 42 and res.counts["rows_out"] == 40
    assert res.counts["rejected_by_reason"] == {"tokenize.duplicate_id": 1, "tokenize.no_tokens": 1}
    rej = {r["reason"]: r for r in res.dataset.head(10, view="rejects").to_pylist()}
    assert rej["tokenize.duplicate_id"]["id"] == rej["tokenize.duplicate_id"]["duplicate_of"] == docs[3]["id"]
    assert rej["tokenize.duplicate_id"]["source_record"] == 11  # the later copy goes, the first stays
    assert rej["tokenize.no_tokens"]["id"] == "only-x" and rej["tokenize.no_tokens"]["text"] == "xxxx"
    assert res.dataset.manifest["stats"]["tokenizer"]["source"]["sha256"]

    # The loaded file's bytes are part of the fingerprint.
    cfg = TokenizeConfig(tokenizer="pretrained", tokenizer_path=str(tok_dir))
    before = plan(TokenizeStage(), cfg, tmp_path / "root", {"decontaminate": dataset}).fingerprint
    tok.tokenizer.normalizer = None
    (tok_dir / "tokenizer.json").write_text(tok.to_json())
    assert plan(TokenizeStage(), cfg, tmp_path / "root", {"decontaminate": dataset}).fingerprint != before


def test_incremental_version_reuses_the_parent_tokenizer(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    docs = make_docs(120)
    write_jsonl(raw / "a.jsonl", docs[:60])
    root = tmp_path / "root"
    v1 = tokenize(root, ingest(root, raw))
    write_jsonl(raw / "b.jsonl", docs[60:])
    ingest2 = ingest(root, raw)
    assert ingest2.parent is not None
    v2 = tokenize(root, ingest2)
    assert v2.dataset.parent is not None and v2.dataset.parent.fingerprint == v1.fingerprint
    t1, t2 = (d.dataset.manifest["totals"] for d in (v1, v2))
    assert t2["tokenizer_fingerprint"] == t1["tokenizer_fingerprint"]
    assert (v2.path / "tokenizer" / "tokenizer.json").read_text() == (
        v1.path / "tokenizer" / "tokenizer.json"
    ).read_text()
    new_ids = pq.read_table(v2.dataset.view_path("docs")).column("id").to_pylist()
    assert sorted(new_ids) == sorted(d["id"] for d in docs[60:])


def test_char_level_on_tiny_shakespeare_matches_nanogpt_ids(tmp_path, shared_corpora):
    lines = (shared_corpora / "pretrain" / "tinyshakespeare.txt").read_text().splitlines(keepends=True)
    text = "".join(lines[:3000])
    src = tmp_path / "shakespeare.txt"
    src.write_text(text)
    root = tmp_path / "root"
    dataset = ingest(root, src, format="text", text_mode="paragraphs")
    res = tokenize(root, dataset, tokenizer="char", seq_len=64, val_fraction=0.1)
    tok = load_tokenizer(res.path / "tokenizer")
    chars = sorted(set(text.replace("\n\n", "")))
    assert tok.vocab_size == len(chars) + 2 and tok.eot_id == len(chars)  # + eot + unk
    assert tok.encode("".join(chars)) == list(range(len(chars)))  # nanoGPT's stoi
    docs = pq.read_table(res.dataset.view_path("docs"))
    texts = {r["id"]: r["text"] for r in dataset.head(10_000).to_pylist()}
    for i, ids in zip(docs.column("id").to_pylist()[:50], docs.column("input_ids").to_pylist()[:50]):
        assert tok.decode(ids) == texts[i]
    assert res.dataset.manifest["totals"]["sequences_val"] > 0


def test_config_rejects_inconsistent_choices():
    with pytest.raises(ValueError, match="needs tokenizer_path"):
        TokenizeConfig(tokenizer="pretrained")
    with pytest.raises(ValueError, match="only read with"):
        TokenizeConfig(tokenizer="bpe", tokenizer_path="x.json")
    with pytest.raises(ValueError):
        TokenizeConfig(unknown=1)


def test_encode_batches_are_bounded_by_text_bytes():
    from pipeline.tokenize.encode import byte_bounded

    texts = ["a" * n for n in (5, 5, 30, 1, 1, 1, 9)]
    batch = pa.RecordBatch.from_pydict({"text": texts})
    parts = [b.column("text").to_pylist() for b in byte_bounded(iter([batch]), 10)]
    assert parts == [texts[0:2], texts[2:3], texts[3:6], texts[6:7]]  # a longer document goes alone
    assert [b.num_rows for b in byte_bounded(iter([batch]), 1_000)] == [7]


def test_encoding_ahead_keeps_order_and_encodes_the_next_batch_before_a_shard_closes():
    from pipeline.tokenize.encode import encode_ahead

    texts = [d["text"] for d in make_docs(12)]
    tok = train_bpe([texts], vocab_size=300)
    items = [
        ("s0", texts[0:4]),
        ("s0", texts[4:6]),
        ("s0", None),  # the end of shard s0
        ("s1", texts[6:12]),
        ("s1", None),
    ]
    pulled = []

    def source():
        for n, (key, t) in enumerate(items):
            pulled.append(n)
            yield key, None if t is None else pa.RecordBatch.from_pydict({"text": t})

    out = []
    for key, batch, encodings in encode_ahead(tok, source()):
        out.append((key, None if batch is None else batch.column("text").to_pylist(), encodings))
        if len(out) == 2:  # s0's last batch: s1's first is already encoding, not waiting on s0's close
            assert pulled[-1] == 3
    assert [(k, t) for k, t, _ in out] == items
    for _, t, encodings in out:
        assert [e.ids for e in encodings] == ([] if t is None else [tok.encode(x) for x in t])


def test_large_vocabulary_uses_uint32_ids(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = [f"w{i}" for i in range(70_000)]
    hf = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w0"))
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf.add_special_tokens(["<|endoftext|>"])
    (tmp_path / "tokenizer.json").write_text(hf.to_str())
    docs = [
        {"id": f"d{i}", "text": " ".join(words[(i * 997 + k * 6007) % 70_000] for k in range(40))}
        for i in range(30)
    ]
    root = tmp_path / "root"
    dataset = ingest(root, write_jsonl(tmp_path / "d.jsonl", docs))
    res = tokenize(root, dataset, tokenizer="pretrained", tokenizer_path=str(tmp_path / "tokenizer.json"))
    assert res.dataset.manifest["totals"]["vocab_size"] == 70_001
    for view in ("data", "docs"):
        schema = pq.read_schema(res.dataset.shard_paths(view)[0])
        assert schema.field("input_ids").type == pa.list_(pa.uint32())
    assert max(max(r) for r in rows_of(res.dataset.view_path("data"))) >= 1 << 16


def test_empty_input_publishes_an_empty_token_dataset(tmp_path):
    src = tmp_path / "blank.jsonl"
    src.write_text('{"text": "   "}\n')
    root = tmp_path / "root"
    res = tokenize(root, ingest(root, src))
    totals = res.dataset.manifest["totals"]
    assert res.counts["rows_in"] == 0 and totals["docs"] == totals["sequences_train"] == 0
    assert res.dataset.manifest["validation"]["success"]


def test_both_duplicate_id_checks_find_the_same_first_copies(tmp_path):
    docs = make_docs(30)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_jsonl(raw / "a.jsonl", docs[:20] + [dict(docs[4]), dict(docs[25])])
    write_jsonl(raw / "b.jsonl", docs[20:] + [dict(docs[4]), dict(docs[7])])
    dataset = ingest(tmp_path / "root", raw)
    assert dataset.num_shards() == 2
    in_memory = find_duplicate_ids(dataset)
    assert find_duplicate_ids(dataset, in_memory_rows=0) == in_memory  # the DuckDB pass
    assert in_memory == {
        docs[4]["id"]: (0, 4),
        docs[7]["id"]: (0, 7),
        docs[25]["id"]: (0, 21),
    }  # its copy in a.jsonl comes first
    assert find_duplicate_ids(ingest(tmp_path / "root2", write_jsonl(tmp_path / "u.jsonl", docs))) == {}


def test_an_input_encoded_as_one_unit_finds_repeated_ids_without_the_pre_pass(tmp_path, monkeypatch):
    from pipeline.tokenize import stage as tokenize_stage

    docs = make_docs(30)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_jsonl(raw / "a.jsonl", docs[:20] + [dict(docs[4])])
    write_jsonl(raw / "b.jsonl", docs[20:] + [dict(docs[4]), dict(docs[25])])
    dataset = ingest(tmp_path / "root", raw)
    monkeypatch.setattr(
        tokenize_stage, "find_duplicate_ids", lambda *a: pytest.fail("one unit reads every id itself")
    )
    res = tokenize(tmp_path / "root", dataset)
    assert res.counts["rejected_by_reason"] == {"tokenize.duplicate_id": 3}
    rejected = sorted(
        (r["source_file"][-7:], r["source_record"]) for r in res.dataset.head(10, view="rejects").to_pylist()
    )
    assert rejected == [("a.jsonl", 21), ("b.jsonl", 11), ("b.jsonl", 12)]  # every copy after the first


def test_a_small_input_packed_by_its_encode_unit_equals_scatter_and_gather(corpus, tmp_path, monkeypatch):
    from pipeline.tokenize import encode, packing

    packed = []
    pack_alone = packing.pack_alone
    monkeypatch.setattr(encode, "pack_alone", lambda *a: packed.append(pack_alone(*a)) or packed[-1])
    direct = tokenize(tmp_path / "a", corpus, shard_sequences=10_000)
    assert packed and packed[0] == {
        s: direct.dataset.manifest["totals"][f"sequences_{s}"] for s in ("train", "val")
    }
    assert packed[0]["val"] > 0
    monkeypatch.setattr(encode, "pack_alone", lambda *a: None)  # the scatter and gather phases
    phased = tokenize(tmp_path / "b", corpus, shard_sequences=10_000)
    assert direct.fingerprint == phased.fingerprint
    a, b = direct.dataset.manifest, phased.dataset.manifest
    assert a["views"] == b["views"]  # every file's sha256
    assert (a["counts"], a["stats"], a["totals"]) == (b["counts"], b["stats"], b["totals"])
    # More sequences than one bucket holds: the unit leaves them to the phases.
    packed.clear()
    monkeypatch.setattr(encode, "pack_alone", lambda *a: packed.append(pack_alone(*a)) or packed[-1])
    several = tokenize(tmp_path / "c", corpus)
    assert packed == [None] and several.dataset.manifest["stats"]["shards"]["train"] > 1


def test_a_run_stopped_after_packing_resumes_from_the_encode_units_marker(corpus, tmp_path, monkeypatch):
    from pipeline.tokenize import stage as tokenize_stage

    clean = tokenize(tmp_path / "a", corpus, shard_sequences=10_000)
    encoded = []
    encode_shards = tokenize_stage.encode_shards
    monkeypatch.setattr(tokenize_stage, "encode_shards", lambda *a: encoded.append(1) or encode_shards(*a))
    monkeypatch.setattr(tokenize_stage, "plan_gather", lambda *a: 1 / 0)  # after the encode unit
    with pytest.raises(ZeroDivisionError):
        tokenize(tmp_path / "b", corpus, shard_sequences=10_000)
    monkeypatch.undo()
    monkeypatch.setattr(tokenize_stage, "encode_shards", lambda *a: encoded.append(1) or encode_shards(*a))
    resumed = tokenize(tmp_path / "b", corpus, shard_sequences=10_000)
    assert encoded == [1]  # the packed unit ran once: the second run read its marker
    assert resumed.dataset.manifest["views"] == clean.dataset.manifest["views"]
    assert resumed.dataset.manifest["totals"] == clean.dataset.manifest["totals"]


def test_small_shards_encoded_together_write_what_each_alone_writes(tmp_path, monkeypatch):
    from pipeline.tokenize import encode

    docs = make_docs(60)
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(3):  # three input shards, an id repeated across two of them
        write_jsonl(raw / f"{k}.jsonl", docs[k * 20 : k * 20 + 20] + ([dict(docs[5])] if k == 2 else []))
    dataset = ingest(tmp_path / "root", raw)
    assert dataset.num_shards() == 3 and encode.encode_units(dataset) == [[0, 1, 2]]
    together = tokenize(tmp_path / "a", dataset, batch_docs=7)
    monkeypatch.setattr(encode, "UNIT_FILE_BYTES", 0)
    assert encode.encode_units(dataset) == [[0], [1], [2]]
    alone = tokenize(tmp_path / "b", dataset, batch_docs=7)
    assert together.counts == alone.counts and together.counts["rejected_by_reason"] == {
        "tokenize.duplicate_id": 1
    }
    assert together.dataset.manifest["views"] == alone.dataset.manifest["views"]  # every file's sha256
    assert [s["file"] for s in together.dataset.manifest["views"]["docs"]["shards"]] == [
        f"docs-{k:05d}-0000.parquet" for k in range(3)
    ]
