"""Ingest: every source format, every kind of bad input, incremental versions."""

import gzip
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.dataset import Dataset
from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import run_stage


def ingest(root, *sources, **kw):
    cfg = IngestConfig(sources=[SourceConfig(**s) for s in sources], **kw)
    return run_stage(IngestStage(), cfg, root, {})


def rejects(result):
    return Dataset(result.path).head(10_000, view="rejects").to_pylist()


@pytest.fixture
def broken_dir(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    (d / "good.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a1", "text": "First document.\r\nSecond line.", "url": "http://x/1", "lang": "en"},
                {"text": "No id here, so a content hash is used."},
                {"id": "a3", "text": "Cafe\u0301 in decomposed form."},
            ]
        )
        + "\n\n"
    )
    (d / "bad.jsonl").write_bytes(
        b'{"text": "fine"}\n'
        b"{not json\n"
        b"[1, 2, 3]\n"
        b'{"body": "no text field"}\n'
        b'{"text": 123}\n'
        b'{"text": "   "}\n'
        b'{"text": "bad utf8 \xff\xfe here"}\n'
    )
    lines = "".join(json.dumps({"text": f"gz line {i} " + "x" * 200}) + "\n" for i in range(400)).encode()
    blob = gzip.compress(lines)
    (d / "trunc.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (d / "good.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "zstd doc"}\n'))
    (d / "empty.jsonl").write_bytes(b"")
    (d / "binary.jsonl").write_bytes(bytes(range(256)) * 8)
    pq.write_table(pa.table({"body": ["a", "b", "c"], "n": [1, 2, 3]}), d / "wrong_schema.parquet")
    pq.write_table(
        pa.table({"text": ["parquet doc one", "parquet doc two"], "id": ["p1", "p2"]}), d / "good.parquet"
    )
    (d / "notes.txt").write_text("A plain text file is one document.\n\nEven with paragraphs.\n")
    (d / "not_parquet.parquet").write_bytes(b"PAR1 this is not really parquet")
    return d


def test_broken_directory_counts_add_up_and_reasons_name_file_and_record(tmp_path, broken_dir):
    r = ingest(tmp_path / "root", {"path": str(broken_dir)})
    c = r.counts
    assert c["rows_in"] == c["rows_out"] + c["rows_rejected"]
    by = c["rejected_by_reason"]
    assert by == {
        "ingest.binary_file": 1,
        "ingest.empty_file": 1,
        "ingest.empty_text": 1,
        "ingest.invalid_json": 1,
        "ingest.missing_text_field": 1 + 3,  # one JSONL record + every row of the wrong-schema Parquet
        "ingest.not_an_object": 1,
        "ingest.text_not_string": 1,
        "ingest.truncated_file": 1,
        "ingest.unreadable_parquet": 1,
    }
    rej = rejects(r)
    bad_json = next(x for x in rej if x["reason"] == "ingest.invalid_json")
    assert bad_json["source_file"].endswith("bad.jsonl") and bad_json["source_record"] == 2
    assert bad_json["text"] == "{not json"
    trunc = next(x for x in rej if x["reason"] == "ingest.truncated_file")
    assert trunc["source_file"].endswith("trunc.jsonl.gz")
    docs = Dataset(r.path).head(10_000).to_pylist()
    texts = {d["text"] for d in docs}
    # lines before the truncation point were kept
    gz = [d for d in docs if d["source_file"].endswith("trunc.jsonl.gz")]
    assert 0 < len(gz) < 400 and trunc["source_record"] == len(gz) + 1
    assert "First document.\nSecond line." in texts  # line endings normalised
    assert "Caf\u00e9 in decomposed form." in texts  # NFC
    assert "bad utf8 \ufffd\ufffd here" in texts and r.stats["utf8_repaired"] == 1
    assert {"zstd doc", "parquet doc one", "fine"} <= texts
    good = {d["id"]: d for d in docs if d["source_file"].endswith("good.jsonl")}
    assert good["a1"]["url"] == "http://x/1" and json.loads(good["a1"]["meta"]) == {"lang": "en"}
    assert len(next(k for k in good if k not in ("a1", "a3"))) == 32  # content hash id
    # the manifest's counts agree with the shards
    n_docs = duckdb.sql(f"SELECT count(*) FROM read_parquet('{r.data_path}/*.parquet')").fetchall()[0][0]
    n_rej = duckdb.sql(f"SELECT count(*) FROM read_parquet('{r.path}/rejects/*.parquet')").fetchall()[0][0]
    assert (n_docs, n_rej) == (c["rows_out"], c["rows_rejected"])


def test_huge_single_document_is_rejected_not_loaded_downstream(tmp_path):
    f = tmp_path / "big.jsonl"
    f.write_text(json.dumps({"text": "word " * 400_000}) + "\n" + json.dumps({"text": "small"}) + "\n")
    r = ingest(tmp_path / "root", {"path": str(f)})
    assert r.counts["rejected_by_reason"] == {"ingest.too_long": 1}
    rej = rejects(r)[0]
    assert rej["value"] == "2000000" and len(rej["text"]) <= 4096


def test_csv_tsv_and_text_paragraphs(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"Hello, world",1\n"multi\nline",0\nonly-one-field\n')
    (tmp_path / "b.tsv").write_text("first doc\tpos\nsecond doc\tneg\n")
    (tmp_path / "c.txt").write_text("para one\nstill one\n\n\npara two\n")
    r = ingest(
        tmp_path / "root",
        {"path": str(tmp_path / "a.csv")},
        {"path": str(tmp_path / "b.tsv"), "header": False, "columns": ["text", "label"]},
        {"path": str(tmp_path / "c.txt"), "text_mode": "paragraphs", "name": "notes"},
    )
    texts = sorted(d["text"] for d in Dataset(r.path).head(100).to_pylist())
    assert texts == [
        "Hello, world",
        "first doc",
        "multi\nline",
        "para one\nstill one",
        "para two",
        "second doc",
    ]
    assert r.counts["rejected_by_reason"] == {"ingest.wrong_field_count": 1}
    assert r.stats["by_source"]["notes"]["rows_out"] == 2


def test_tsv_stray_quote_does_not_merge_lines(tmp_path):
    (tmp_path / "r.tsv").write_text('text\tlabel\n"Great" movie, 10/10\t1\nA "so-so film\t0\nBad.\t0\n')
    r = ingest(tmp_path / "root", {"path": str(tmp_path / "r.tsv")})
    assert sorted(d["text"] for d in Dataset(r.path).head(10).to_pylist()) == [
        '"Great" movie, 10/10',
        'A "so-so film',
        "Bad.",
    ]


def test_hugging_face_sources_from_local_files(tmp_path):
    import datasets

    f = tmp_path / "hf.jsonl"
    f.write_text("".join(json.dumps({"content": f"hf doc {i}", "idx": i}) + "\n" for i in range(5)))
    disk = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["saved one", "saved two"]}).save_to_disk(str(disk))
    r = ingest(
        tmp_path / "root",
        {
            "format": "hf",
            "hf_name": "json",
            "data_files": [str(f)],
            "text_field": "content",
            "id_field": "idx",
        },
        {"format": "hf_disk", "path": str(disk)},
    )
    docs = Dataset(r.path).head(100).to_pylist()
    assert sorted(d["text"] for d in docs) == [
        "hf doc 0",
        "hf doc 1",
        "hf doc 2",
        "hf doc 3",
        "hf doc 4",
        "saved one",
        "saved two",
    ]
    assert {d["id"] for d in docs if d["text"].startswith("hf")} == {"0", "1", "2", "3", "4"}


def test_incremental_ingest_appends_versions_with_only_new_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "one.jsonl").write_text('{"text": "one"}\n')
    root = tmp_path / "root"
    v1 = ingest(root, {"path": str(raw)})
    again = ingest(root, {"path": str(raw)})
    assert again.cached and again.fingerprint == v1.fingerprint
    (raw / "two.jsonl").write_text('{"text": "two"}\n{"text": "three"}\n')
    v2 = ingest(root, {"path": str(raw)})
    assert not v2.cached and v2.fingerprint != v1.fingerprint
    assert v2.counts["rows_in"] == 2  # only the new file
    ds = Dataset(v2.path)
    assert ds.parent.fingerprint == v1.fingerprint
    assert [d.fingerprint for d in ds.chain()] == [v1.fingerprint, v2.fingerprint]
    (raw / "one.jsonl").write_text('{"text": "one, edited"}\n')  # a changed file is ingested again
    v3 = ingest(root, {"path": str(raw)})
    assert [d["text"] for d in Dataset(v3.path).head(10).to_pylist()] == ["one, edited"]
    assert ingest(root, {"path": str(raw)}).fingerprint == v3.fingerprint


def test_missing_source_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="matches no files"):
        ingest(tmp_path / "root", {"path": str(tmp_path / "nope" / "*.jsonl")})


def test_default_corpus_is_real_prose_with_package_labels(tmp_path):
    cfg = IngestConfig(sources=[SourceConfig(format="default")])
    cfg.default_corpus.distribution_descriptions = False
    cfg.default_corpus.licence_files = False
    r = run_stage(IngestStage(), cfg, tmp_path, {})
    assert r.counts["rows_out"] > 2_000 and r.counts["rows_rejected"] == 0
    rows = duckdb.sql(
        f"SELECT json_extract_string(meta, '$.package') AS pkg, count(*) n FROM read_parquet('{r.data_path}/*.parquet') "
        "GROUP BY 1 ORDER BY n DESC LIMIT 5"
    ).fetchall()
    assert {"email", "asyncio", "multiprocessing", "unittest", "tkinter", "xml", "concurrent"} & {
        p for p, _ in rows
    }
    (text,) = duckdb.sql(
        f"SELECT text FROM read_parquet('{r.data_path}/*.parquet') WHERE id = 'stdlib:json'"
    ).fetchall()[0]
    assert "JSON" in text


def test_same_input_gives_byte_identical_shards(tmp_path, broken_dir):
    a = ingest(tmp_path / "a", {"path": str(broken_dir)})
    b = ingest(tmp_path / "b", {"path": str(broken_dir)})
    assert a.fingerprint == b.fingerprint
    for view in ("data", "rejects"):
        sa = Dataset(a.path).manifest["views"][view]["shards"]
        sb = Dataset(b.path).manifest["views"][view]["shards"]
        assert sa == sb and sa
