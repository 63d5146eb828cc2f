"""A data root on object storage: the data path on s3:// against a local S3 server (moto).

ingest -> dedup -> annotate -> filter -> tokenize run once with a local root and once with an
``s3://`` root. On S3 every version must be published by its manifest (staging never shows), the
shards must be the local run's, and reading them back from S3 alone (an empty local mirror) must
give the same rows. A prefix whose manifest was never written, as a crashed upload leaves it,
must be invisible to every reader.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from conftest import web_sample

from pipeline import catalog, storage
from pipeline.config import PipelineConfig
from pipeline.dataset import MANIFEST, Dataset, is_published
from pipeline.stage import run_stage
from pipeline.stages import BY_NAME

DATA_STAGES = ["ingest", "dedup", "annotate", "filter", "labeled", "decontaminate", "tokenize"]
WEB_DOCS = 150
BUCKET = "tokenmill-test"
ROOT = f"s3://{BUCKET}/runs/a"


@pytest.fixture(scope="module")
def web_jsonl(tmp_path_factory) -> Path:
    return web_sample(tmp_path_factory, WEB_DOCS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free 127.0.0.1 port, with the environment pointing s3fs at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            storage.OPTIONS_ENV: json.dumps({"endpoint_url": f"http://127.0.0.1:{port}"}),
            storage.STATE_DIR_ENV: str(tmp_path_factory.mktemp("state")),
        }.items():
            mp.setenv(k, v)
        fs, _ = storage.filesystem(ROOT)
        fs.mkdir(BUCKET)
        yield fs
    server.stop()


def data_config(jsonl: Path) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "ingest": {
                "sources": [{"path": str(jsonl), "format": "jsonl", "id_field": "id"}],
                "shard_rows": 50,
            },
            "dedup": {"partitions": 2},
            "annotate": {"batch_rows": 64},
            "filter": {"shard_rows": 40},
            "tokenize": {"vocab_size": 300, "seq_len": 64, "shard_sequences": 256, "docs_shard_rows": 40},
        }
    )


def run_data_path(cfg: PipelineConfig, root: str | Path) -> dict[str, Dataset]:
    out: dict[str, Dataset] = {}
    for name in DATA_STAGES:
        stage = BY_NAME[name]
        result = run_stage(stage, getattr(cfg, name), root, {up: out[up] for up in stage.inputs})
        out[name] = result.dataset
    return out


def rows(d: Dataset, view: str) -> list[dict]:
    return [r for b in d.iter_batches(view) for r in b.to_pylist()]


def test_data_path_on_s3_publishes_the_local_runs_datasets(s3, web_jsonl, tmp_path, monkeypatch):
    cfg = data_config(web_jsonl)
    local = run_data_path(cfg, tmp_path / "local")
    remote = run_data_path(cfg, ROOT)

    keys = s3.find(f"{BUCKET}/runs/a")
    assert not [k for k in keys if "/.staging/" in k or "/_unit." in k]  # staging stays local
    for name in DATA_STAGES:
        fp = remote[name].fingerprint
        assert fp == local[name].fingerprint
        prefix = f"{BUCKET}/runs/a/datasets/{name}/{fp}"
        assert s3.exists(f"{prefix}/{MANIFEST}")
        assert remote[name].location == f"s3://{prefix}"
        lm, rm = local[name].manifest, json.loads(s3.cat_file(f"{prefix}/{MANIFEST}"))
        assert rm["views"] == lm["views"] and rm["counts"] == lm["counts"]
        for view, entry in rm["views"].items():  # every shard the manifest names is on S3
            for shard in entry["shards"]:
                assert s3.info(f"{prefix}/{view}/{shard['file']}")["size"] == shard["bytes"]
    assert local["tokenize"].manifest["counts"]["rows_out"] > 0
    assert local["dedup"].manifest["counts"]["rows_rejected"] > 0
    assert s3.exists(
        f"{BUCKET}/runs/a/datasets/tokenize/{remote['tokenize'].fingerprint}/tokenizer/tokenizer.json"
    )

    # A new process on another host: nothing local, everything read back from S3.
    monkeypatch.setenv(storage.STATE_DIR_ENV, str(tmp_path / "fresh-state"))
    assert not storage.resolve_root(ROOT).exists()
    again = run_data_path(cfg, ROOT)  # every stage is a cache hit, found from S3 manifests
    for name in DATA_STAGES:
        assert again[name].path == storage.resolve_root(ROOT) / "datasets" / name / local[name].fingerprint
        for view in local[name].manifest["views"]:
            assert rows(again[name], view) == rows(local[name], view), f"{name}/{view}"
        again[name].verify()
    tok = Dataset.open(f"{ROOT}/datasets/tokenize/{local['tokenize'].fingerprint}")
    assert (tok.path / "tokenizer" / "tokenizer.json").is_file()  # non-shard files come along
    found = {d.stage: d.fingerprint for d in catalog.published_datasets(ROOT)}
    assert found == {n: local[n].fingerprint for n in DATA_STAGES}
    assert catalog.latest(ROOT, "filter").fingerprint == local["filter"].fingerprint
    assert catalog.catalog_path(ROOT).parent == storage.resolve_root(ROOT)  # the catalog stays local


def test_a_prefix_without_manifest_is_not_a_dataset(s3, web_jsonl, tmp_path, monkeypatch):
    root = f"s3://{BUCKET}/runs/crash"
    cfg = data_config(web_jsonl).ingest
    # A crashed publish: the upload dies when it comes to the manifest, after every shard.
    real_upload = storage.upload

    def upload_until_manifest(local, mirror):
        if Path(mirror).name == MANIFEST:
            raise ConnectionError("lost the store")
        real_upload(local, mirror)

    monkeypatch.setattr(storage, "upload", upload_until_manifest)
    with pytest.raises(ConnectionError):
        run_stage(BY_NAME["ingest"], cfg, root, {})
    monkeypatch.setattr(storage, "upload", real_upload)

    (version,) = s3.ls(f"{BUCKET}/runs/crash/datasets/ingest")
    assert s3.find(f"{version}/data")  # the shards are there...
    assert not s3.exists(f"{version}/{MANIFEST}")  # ...but nothing published them
    url = f"s3://{version}"
    for fresh in (False, True):  # the writer's own mirror, then an empty one
        if fresh:
            monkeypatch.setenv(storage.STATE_DIR_ENV, str(tmp_path / "fresh-state"))
        assert not is_published(url)
        with pytest.raises(FileNotFoundError):
            Dataset.open(url)
        assert catalog.published_datasets(root) == []
        assert catalog.latest(root, "ingest") is None

    # The re-run uploads again and publishes; readers now see it.
    result = run_stage(BY_NAME["ingest"], cfg, root, {})
    assert not result.cached and result.dataset.location == url
    assert s3.exists(f"{version}/{MANIFEST}")
    assert [d.fingerprint for d in catalog.published_datasets(root)] == [result.fingerprint]
    first = pq.read_table(Dataset.open(url).shard_path(0))
    assert first.num_rows == min(cfg.shard_rows, WEB_DOCS)


def test_store_urls_map_to_mirror_paths_and_back(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.STATE_DIR_ENV, str(tmp_path))
    p = storage.local_path("s3://bucket/some/prefix/")
    assert p == tmp_path.resolve() / "stores" / "s3" / "bucket" / "some" / "prefix"
    assert storage.url_of(p / "datasets") == "s3://bucket/some/prefix/datasets"
    assert storage.url_of(tmp_path / "elsewhere") is None
    assert storage.local_path(tmp_path / "x") == tmp_path / "x"  # local roots stay as they are
    assert storage.local_path("file:///data/root") == Path("/data/root")
    with pytest.raises(ValueError):
        storage.local_path("s3://bucket/../escape")


def test_cli_runs_and_reads_an_s3_data_root(s3, cli_env, tmp_path):
    """`tokenmill run/show/sql --data-dir s3://…` through the real CLI and the Prefect flows."""
    import os
    import subprocess
    import sys

    raw = tmp_path / "raw.jsonl"
    raw.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": f"Document number {i} says something rather different. " * 8})
            + "\n"
            for i in range(40)
        )
    )
    root = f"s3://{BUCKET}/cli"
    env = {
        **cli_env,
        **{
            k: os.environ[k]
            for k in (
                storage.OPTIONS_ENV,
                storage.STATE_DIR_ENV,
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION",
            )
        },
    }

    def tm(*args):
        cmd = [sys.executable, "-m", "flows.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    src = json.dumps([{"path": str(raw), "format": "jsonl", "id_field": "id"}])
    run = tm("run", "ingest", "dedup", "--data-dir", root, "--json", "--set", f"ingest.sources={src}")
    assert run.returncode == 0, run.stderr[-3000:]
    summaries = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [s["stage"] for s in summaries] == ["ingest", "dedup"]
    fp = summaries[-1]["fingerprint"]
    assert s3.exists(f"{BUCKET}/cli/datasets/dedup/{fp}/{MANIFEST}")

    shown = tm("show", "dedup", "--data-dir", root)
    assert shown.returncode == 0 and fp in shown.stdout, shown.stderr[-2000:]
    counted = tm("sql", "SELECT count(*) AS n FROM ingest", "--data-dir", root)
    assert counted.returncode == 0 and "40" in counted.stdout, counted.stderr[-2000:]


def test_raw_sources_on_s3_globs_and_incremental_by_etag(s3, tmp_path):
    """`ingest.sources[].path: s3://bucket/crawl/*.warc.gz`: listed by glob, read by streaming,
    identified by ETag/size/mtime, so a new or rewritten object is ingested and nothing else."""
    import io
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from make_crawl import CrawlWriter

    from pipeline.ingest.config import IngestConfig, SourceConfig
    from pipeline.ingest.stage import IngestStage

    def crawl(n: int, tag: str) -> bytes:
        buf = io.BytesIO()
        w = CrawlWriter(buf, f"{tag}.warc.gz", tag)
        for i in range(n):
            body = (
                f"<html><head><title>Page {i}</title></head><body><nav>Home | About</nav><article>"
                f"<h1>Notes from the {tag} crawl, page {i}</h1><p>This page of the {tag} crawl tells about "
                f"harbour number {i}: the boats that moor there, the fish market on Fridays, and the ferry "
                "timetable, which changes twice a year.</p></article><footer>Contact us</footer></body></html>"
            ).encode()
            w.fetch(
                f"http://{tag}.example/p{i}",
                "2019-07-17T12:00:00Z",
                "200 OK",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
                body,
                "text/html",
            )
        return buf.getvalue()

    bucket = f"{BUCKET}/crawl"
    s3.pipe(f"{bucket}/a.warc.gz", crawl(3, "alpha"))
    s3.pipe(f"{bucket}/b.warc.gz", crawl(2, "beta"))
    s3.pipe(f"{bucket}/notes.txt", b"not a crawl file")
    s3.pipe(
        f"{bucket}/jsonl/docs.jsonl", json.dumps({"text": "A JSON Lines document on S3."}).encode() + b"\n"
    )
    root = tmp_path / "root"
    cfg = IngestConfig(
        sources=[
            SourceConfig(path=f"s3://{bucket}/*.warc.gz"),
            SourceConfig(path=f"s3://{bucket}/jsonl/", name="jsonl"),
        ]
    )
    v1 = run_stage(IngestStage(), cfg, root, {})
    assert v1.counts["rows_out"] == 6 and v1.counts["rows_rejected"] == 0
    docs = rows(v1.dataset, "data")
    assert {d["source_file"] for d in docs} == {
        f"s3://{bucket}/a.warc.gz",
        f"s3://{bucket}/b.warc.gz",
        f"s3://{bucket}/jsonl/docs.jsonl",
    }
    assert {d["url"] for d in docs if d["url"]} == {f"http://alpha.example/p{i}" for i in range(3)} | {
        f"http://beta.example/p{i}" for i in range(2)
    }
    units = {u["key"]: u for u in v1.stats["units"]}
    assert units[f"s3://{bucket}/a.warc.gz"]["etag"] and units[f"s3://{bucket}/a.warc.gz"]["size"] > 0

    again = run_stage(IngestStage(), cfg, root, {})
    assert again.cached and again.fingerprint == v1.fingerprint  # nothing changed on the store

    s3.pipe(f"{bucket}/c.warc.gz", crawl(4, "gamma"))  # a new file
    s3.pipe(f"{bucket}/a.warc.gz", crawl(1, "alpha"))  # a rewritten one: new ETag and size
    v2 = run_stage(IngestStage(), cfg, root, {})
    assert not v2.cached and v2.dataset.parent.fingerprint == v1.fingerprint
    assert v2.counts["rows_out"] == 5  # c (4) + the new a (1); b and the JSONL are not read again
    assert {d["source_file"] for d in rows(v2.dataset, "data")} == {
        f"s3://{bucket}/a.warc.gz",
        f"s3://{bucket}/c.warc.gz",
    }


def test_cache_cap_setting_parses_sizes(monkeypatch):
    from pipeline.errors import ConfigError

    for raw, expected in (
        ("", None),
        ("0", None),
        ("1000", 1000),
        ("50GB", 50 * 10**9),
        ("500MiB", 500 * 2**20),
        ("1.5 kb", 1500),
    ):
        monkeypatch.setenv(storage.CACHE_MAX_ENV, raw)
        assert storage.cache_max_bytes() == expected, raw
    monkeypatch.setenv(storage.CACHE_MAX_ENV, "lots")
    with pytest.raises(ConfigError, match=storage.CACHE_MAX_ENV):
        storage.cache_max_bytes()


def test_shard_cache_stays_under_its_cap_evicting_least_recently_used(s3, tmp_path, monkeypatch):
    import pyarrow as pa

    from pipeline.dataset import ShardWriter, Staging, cached_shards
    from pipeline.schema import DOCUMENT_SCHEMA

    root = f"s3://{BUCKET}/runs/cache"
    fp = "d" * 32
    docs = [
        {
            "id": f"c{i}",
            "text": f"cached document {i} " * 40,
            "source": "t",
            "url": None,
            "meta": None,
            "source_file": "f",
            "source_record": i,
        }
        for i in range(200)
    ]
    st = Staging(storage.local_path(root), "ingest", fp)
    w = ShardWriter(st.view("data"), DOCUMENT_SCHEMA, max_rows=25)
    w.write(pa.Table.from_pylist(docs, schema=DOCUMENT_SCHEMA))
    w.close()
    st.publish({"stage": "ingest", "fingerprint": fp}, {"data": DOCUMENT_SCHEMA})

    # Another host reads the version with a cache that holds three shards.
    monkeypatch.setenv(storage.STATE_DIR_ENV, str(tmp_path / "reader-state"))
    ds = Dataset.open(f"{root}/datasets/ingest/{fp}")
    sizes = [s["bytes"] for s in ds.manifest["views"]["data"]["shards"]]
    assert len(sizes) == 8
    cap = 3 * max(sizes) + max(sizes) // 2
    monkeypatch.setenv(storage.CACHE_MAX_ENV, str(cap))

    def cached() -> list[str]:
        return sorted(p.name for p in cached_shards())

    got = []
    for i in range(8):
        got += ds.read_shard(i).column("id").to_pylist()
        assert sum(p.stat().st_size for p in cached_shards()) <= cap
        assert len(cached()) == min(i + 1, 3)
    assert got == [d["id"] for d in docs]  # every row read, though most shards were evicted
    names = [s["file"] for s in ds.manifest["views"]["data"]["shards"]]
    assert cached() == sorted(names[i] for i in (5, 6, 7))
    ds.read_shard(5)  # used again: now the most recent
    ds.read_shard(0)  # fetched again; the least recently used (6) goes
    assert cached() == sorted(names[i] for i in (0, 5, 7))
    assert [r["id"] for b in ds.iter_batches() for r in b.to_pylist()] == [d["id"] for d in docs]
    assert len(cached()) == 3 and (ds.path / "_manifest.json").is_file()  # manifests are not evicted
