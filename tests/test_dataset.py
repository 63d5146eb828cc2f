"""The dataset contract: shards, manifests, counts that add up, atomic publish."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from pipeline.dataset import Dataset, ShardWriter, Staging, clean_staging, is_published
from pipeline.hashing import sha256_file
from pipeline.schema import DOCUMENT_SCHEMA, REJECT_SCHEMA

REPO = Path(__file__).resolve().parents[1]


def _docs(n, start=0):
    return pa.Table.from_pylist(
        [
            {
                "id": f"d{i}",
                "text": f"text {i}",
                "source": "t",
                "url": None,
                "meta": None,
                "source_file": "f",
                "source_record": i,
            }
            for i in range(start, start + n)
        ],
        schema=DOCUMENT_SCHEMA,
    )


def test_shard_writer_rolls_over_and_describes_shards(tmp_path):
    w = ShardWriter(tmp_path, DOCUMENT_SCHEMA, prefix="part-00000", max_rows=40, row_group_rows=16)
    for i in range(5):
        w.write(_docs(25, start=i * 25))
    shards = w.close()
    assert [s.rows for s in shards] == [40, 40, 40, 5]
    assert [s.file for s in shards] == [f"part-00000-{i:04d}.parquet" for i in range(4)]
    for s in shards:
        assert s.sha256 == sha256_file(tmp_path / s.file)
    ids = duckdb.sql(f"SELECT id FROM read_parquet('{tmp_path}/*.parquet') ORDER BY source_record").fetchall()
    assert [r[0] for r in ids] == [f"d{i}" for i in range(125)]


def test_described_shards_follow_the_files_not_what_was_written(tmp_path):
    import pyarrow.parquet as pq

    from pipeline.dataset import describe_shards, shard_rows

    w = ShardWriter(tmp_path, DOCUMENT_SCHEMA, prefix="q")
    w.write(_docs(30))
    (shard,) = w.close()
    assert describe_shards(tmp_path) == [shard] and shard_rows(tmp_path / shard.file) == 30
    # Replaced after the writer closed it: the listing reads the new file, not the writer's note.
    pq.write_table(_docs(7), tmp_path / shard.file)
    (again,) = describe_shards(tmp_path)
    assert again.rows == 7 and again.sha256 == sha256_file(tmp_path / shard.file) != shard.sha256
    assert shard_rows(tmp_path / shard.file) == 7


def test_publish_writes_manifest_and_views_that_open_everywhere(tmp_path):
    st = Staging(tmp_path, "demo", "f" * 32)
    w = ShardWriter(st.view("data"), DOCUMENT_SCHEMA)
    w.write(_docs(10))
    w.close()
    ds = st.publish(
        {
            "schema_version": 1,
            "stage": "demo",
            "fingerprint": "f" * 32,
            "counts": {"rows_in": 10, "rows_out": 10, "rows_rejected": 0},
        },
        {"data": DOCUMENT_SCHEMA, "rejects": REJECT_SCHEMA},
    )
    assert ds.path == tmp_path / "datasets" / "demo" / ("f" * 32)
    assert not any((tmp_path / "datasets" / "demo" / ".staging").iterdir())
    m = json.loads((ds.path / "_manifest.json").read_text())
    assert sorted(p.name for p in ds.data_path.iterdir()) == [s["file"] for s in m["shards"]]
    assert m["views"]["data"]["rows"] == 10 and m["views"]["rejects"]["rows"] == 0
    assert m["shards"][0]["sha256"] == sha256_file(ds.data_path / m["shards"][0]["file"])
    ds.verify()
    # an empty rejects view still opens in DuckDB
    assert (
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{ds.path}/rejects/*.parquet')").fetchall()[0][0] == 0
    )
    assert pads.dataset(ds.data_path, format="parquet").count_rows() == 10
    import datasets

    hf = datasets.load_dataset("parquet", data_dir=str(ds.data_path), split="train")
    assert hf.num_rows == 10
    hf = datasets.load_dataset("parquet", data_files=str(ds.data_path / "*.parquet"), split="train")
    assert sorted(hf["id"]) == sorted(f"d{i}" for i in range(10))


WRITER = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    from pipeline.dataset import Staging, ShardWriter
    from pipeline.schema import DOCUMENT_SCHEMA, REJECT_SCHEMA
    root = sys.argv[1]
    st = Staging(root, "demo", "a" * 32)
    w = ShardWriter(st.view("data"), DOCUMENT_SCHEMA, max_rows=100)
    for i in range(1000):
        w.write(pa.Table.from_pylist([{"id": f"d{i}", "text": "x" * 100, "source": "s", "url": None,
            "meta": None, "source_file": None, "source_record": i}], schema=DOCUMENT_SCHEMA))
        if i == 300:
            print("HALFWAY", flush=True)
            time.sleep(0 if len(sys.argv) > 2 else 60)
    w.close()
    st.publish({"schema_version": 1, "stage": "demo", "fingerprint": "a" * 32}, {"data": DOCUMENT_SCHEMA, "rejects": REJECT_SCHEMA})
    print("DONE", flush=True)
    """
)


def test_writer_killed_midway_leaves_nothing_visible_and_rerun_completes(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = tmp_path / "root"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "HALFWAY"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    final = root / "datasets" / "demo" / ("a" * 32)
    assert not final.exists() and not is_published(final)
    staged = list((root / "datasets" / "demo" / ".staging").iterdir())
    assert len(staged) == 1 and any(staged[0].rglob("*.parquet")), (
        "the killed writer left shards in staging only"
    )
    with pytest.raises(FileNotFoundError):
        Dataset(final)
    # the next writer cleans up after the dead one and publishes
    assert clean_staging(root, "demo") == 1
    out = subprocess.run(
        [sys.executable, str(script), str(root), "fast"], capture_output=True, text=True, env=env
    )
    assert "DONE" in out.stdout, out.stderr
    ds = Dataset(final)
    assert ds.num_rows() == 1000
    ds.verify()


def test_dataset_streams_batches_shard_by_shard(tmp_path):
    st = Staging(tmp_path, "demo", "b" * 32)
    w = ShardWriter(st.view("data"), DOCUMENT_SCHEMA, max_rows=100)
    w.write(_docs(250))
    w.close()
    ds = st.publish({"stage": "demo", "fingerprint": "b" * 32}, {"data": DOCUMENT_SCHEMA})
    sizes = [b.num_rows for b in ds.iter_batches(batch_size=64)]
    assert max(sizes) <= 64 and sum(sizes) == 250
    assert len(ds.shard_paths()) == 3


def _damage(path: Path, offset: int = -100) -> None:
    """Flip one byte in place (the size stays the same): what bit rot or a bad copy does."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_shards_are_named_by_verify_and_refused_by_every_reader(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.dataset import DamagedShard
    from pipeline.dedup.config import DedupConfig
    from pipeline.dedup.stage import DedupStage
    from pipeline.stage import run_stage

    root = tmp_path / "root"
    st = Staging(root, "ingest", "c" * 32)
    w = ShardWriter(st.view("data"), DOCUMENT_SCHEMA, max_rows=30)
    w.write(_docs(90))
    w.close()
    ds = st.publish({"stage": "ingest", "fingerprint": "c" * 32}, {"data": DOCUMENT_SCHEMA})
    assert ds.num_shards() == 3
    cli = CliRunner()
    ok = cli.invoke(app, ["verify", "--data-dir", str(root)])
    assert ok.exit_code == 0, ok.output
    list(ds.iter_batches())  # read (and hashed) once while intact

    flipped, cut = ds.shard_path(1), ds.shard_path(2)
    _damage(flipped)
    cut.write_bytes(cut.read_bytes()[:-10])
    stray = ds.data_path / "part-99999-0000.parquet"
    stray.write_bytes(ds.shard_path(0).read_bytes())

    # `tokenmill verify` names every damaged file and exits 1, like `git fsck`.
    for args in ([], ["ingest"], [ds.fingerprint[:8]], [str(ds.path)]):
        out = cli.invoke(app, ["verify", *args, "--data-dir", str(root)])
        assert out.exit_code == 1, out.output
        damaged = [line for line in out.stdout.splitlines() if line.startswith("damaged ")]
        assert len(damaged) == 3, out.stdout
        assert f"{flipped}: sha256" in out.stdout and f"{cut}: " in out.stdout
        assert f"{stray}: not listed in the manifest" in out.stdout
    assert cli.invoke(app, ["verify", "nosuch", "--data-dir", str(root)]).exit_code == 2

    # Readers fail loudly naming the file, even in this process that read it intact before.
    fresh = Dataset(ds.path)
    with pytest.raises(DamagedShard, match=str(flipped)):
        fresh.read_shard(1)
    with pytest.raises(DamagedShard, match=str(cut)):
        fresh.shard_path(2, verify=False)  # a size mismatch is caught without hashing
    with pytest.raises(DamagedShard, match=str(flipped)):
        list(fresh.iter_batches())
    # A stage reading it fails instead of training (or deduplicating) on damaged data.
    with pytest.raises(DamagedShard, match="damaged shard"):
        run_stage(DedupStage(), DedupConfig(), root, {"ingest": fresh})
    assert not list((root / "datasets").glob("dedup/*/_manifest.json"))


def test_shard_schemas_are_read_once_but_follow_the_file(tmp_path):
    import pyarrow.parquet as pq

    from pipeline.dataset.reader import shard_schema

    path = tmp_path / "part.parquet"
    pq.write_table(_docs(3), path)
    assert shard_schema(path) == DOCUMENT_SCHEMA and shard_schema(path) is shard_schema(path)
    pq.write_table(pa.table({"id": ["a", "b"]}), path)
    assert shard_schema(path).names == ["id"]


def test_shards_are_written_without_dictionary_pages(tmp_path):
    import pyarrow.parquet as pq

    w = ShardWriter(tmp_path, DOCUMENT_SCHEMA, prefix="p")
    w.write(_docs(50))
    (shard,) = w.close()
    meta = pq.ParquetFile(tmp_path / shard.file).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert not [c for c, e in encodings.items() if "RLE_DICTIONARY" in e or "PLAIN_DICTIONARY" in e]
    assert pq.read_table(tmp_path / shard.file).column("text").to_pylist() == [f"text {i}" for i in range(50)]


def test_manifests_are_indented_sorted_json_whatever_the_values(tmp_path):
    import json

    import numpy as np

    from pipeline.dataset.writer import write_manifest

    manifest = {"b": {"z": 1, "a": [0.25, None, "é"]}, "a": np.float64(0.5), "n": np.int64(7), "c": {3: "x"}}
    write_manifest(tmp_path, manifest)
    text = (tmp_path / "_manifest.json").read_text(encoding="utf-8")
    plain = {"b": {"z": 1, "a": [0.25, None, "é"]}, "a": 0.5, "n": 7, "c": {"3": "x"}}
    assert json.loads(text) == plain
    assert text == json.dumps(plain, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_written_shards_are_described_without_reading_them_back(tmp_path, monkeypatch):
    import hashlib

    import pyarrow.parquet as pq

    from pipeline.dataset import reader
    from pipeline.dataset.writer import describe_shards, ensure_nonempty

    # A map column comes back from a footer with its entries field renamed: what is noted must be
    # what a reader gets, or a stage that copies its input's schema writes other bytes.
    schema = DOCUMENT_SCHEMA.append(pa.field("counts", pa.map_(pa.string(), pa.int32())))
    rows = _docs(5).append_column("counts", pa.array([[("a", 1)]] * 5, schema.field("counts").type))
    w = ShardWriter(tmp_path / "full", schema, prefix="p")
    w.write(rows)
    (shard,) = w.close()
    ensure_nonempty(tmp_path / "empty", schema)
    ensure_nonempty(tmp_path / "empty2", schema)
    footers = {
        p: pq.read_schema(p)
        for p in (
            tmp_path / "full" / shard.file,
            *(tmp_path / d / "part-empty.parquet" for d in ("empty", "empty2")),
        )
    }

    def footer_read(*_a, **_k):
        raise AssertionError("a footer was read")

    monkeypatch.setattr(reader.pq, "read_schema", footer_read)
    monkeypatch.setattr(pq, "ParquetFile", footer_read)
    for path, footer in footers.items():
        assert reader.shard_schema(path).equals(footer, check_metadata=True), path
    for d in ("empty", "empty2"):
        (empty,) = describe_shards(tmp_path / d)
        data = (tmp_path / d / empty.file).read_bytes()
        assert (empty.rows, empty.bytes, empty.sha256) == (0, len(data), hashlib.sha256(data).hexdigest())
    monkeypatch.undo()
    assert pq.read_table(tmp_path / "empty" / "part-empty.parquet").num_rows == 0


def test_a_version_this_process_published_is_read_without_hashing_it_again(tmp_path, monkeypatch):
    import os

    from pipeline.dataset import reader

    st = Staging(tmp_path, "demo", "e" * 32)
    w = ShardWriter(st.view("data"), DOCUMENT_SCHEMA)
    w.write(_docs(10))
    w.close()
    header = {"schema_version": 1, "stage": "demo", "fingerprint": "e" * 32}
    ds = st.publish({**header, "counts": {}}, {"data": DOCUMENT_SCHEMA, "rejects": REJECT_SCHEMA})

    def hashed(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(reader, "sha256_file", hashed)
    monkeypatch.setattr(reader.pq, "read_schema", hashed)
    (path,) = ds.shard_paths()
    assert ds.schema == DOCUMENT_SCHEMA and Dataset(ds.path).damaged() == []
    # Changed after publishing (same size, new bytes): hashed again, and found damaged.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(0, 10**9))
    with pytest.raises(AssertionError, match="hashed again"):
        Dataset(ds.path).shard_paths()
    monkeypatch.undo()
    assert [p for p, _ in Dataset(ds.path).damaged()] == [str(path)]
