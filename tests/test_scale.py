"""Scaling out: the same flows on a Dask cluster, and pretraining under torchrun.

The data path (ingest -> dedup -> annotate -> filter -> tokenize) run on a 2-worker Dask
LocalCluster must publish the very bytes the default threads runner publishes: the shard is the
unit of work, and no output may depend on which process ran it or in which order units finished.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import web_sample
from test_pretrain import make_token_dataset, stdlib_paragraphs, tiny_config

from pipeline.config import PipelineConfig
from pipeline.dataset import MANIFEST
from pipeline.pretrain.stage import PretrainStage
from pipeline.stage import run_stage

DATA_STAGES = ["ingest", "dedup", "annotate", "filter", "labeled", "decontaminate", "tokenize"]
WEB_DOCS = 300  # a few hundred real pages: several shards per stage, seconds per run


@pytest.fixture(scope="module")
def web_jsonl(tmp_path_factory) -> Path:
    return web_sample(tmp_path_factory, WEB_DOCS)


def data_config(jsonl: Path, runner: str, address: str | None = None) -> PipelineConfig:
    """Small shards everywhere, so every phase has several units to spread over workers."""
    return PipelineConfig.model_validate(
        {
            "engine": {"runner": runner, "workers": 2, "address": address},
            "ingest": {
                "sources": [{"path": str(jsonl), "format": "jsonl", "id_field": "id"}],
                "shard_rows": 60,
            },
            "dedup": {"partitions": 3},
            "annotate": {"batch_rows": 64},
            "filter": {"shard_rows": 40},
            "tokenize": {
                "vocab_size": 300,
                "seq_len": 64,
                "val_fraction": 0.1,
                "shard_sequences": 256,
                "docs_shard_rows": 40,
            },
        }
    )


def published(root: Path) -> dict[str, dict]:
    """Per stage: the fingerprint and every view's shard list (file, rows, bytes, sha256)."""
    out = {}
    for stage in DATA_STAGES:
        (manifest,) = (root / "datasets" / stage).glob(f"*/{MANIFEST}")
        m = json.loads(manifest.read_text())
        out[stage] = {
            "fingerprint": m["fingerprint"],
            "views": {v: e["shards"] for v, e in sorted(m["views"].items())},
        }
    return out


@pytest.mark.slow
def test_dask_cluster_publishes_the_same_bytes_as_threads(prefect_server, web_jsonl, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster
    from prefect.settings import PREFECT_API_URL

    from flows.stages import end_to_end

    # Dask workers are separate processes: they find the session's test API through the environment.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    runs = {}
    threads_cfg = data_config(web_jsonl, "threads")
    runs["threads"] = end_to_end(config=threads_cfg, data_dir=str(tmp_path / "threads"), stages=DATA_STAGES)
    # One cluster for every stage (engine.address): worker processes start and import once.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask_cfg = data_config(web_jsonl, "dask", address=cluster.scheduler_address)
        runs["dask"] = end_to_end(config=dask_cfg, data_dir=str(tmp_path / "dask"), stages=DATA_STAGES)
        with Client(cluster) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(n > 0 for n in executed.values())  # both workers took units
    for summaries in runs.values():
        assert [s["stage"] for s in summaries] == DATA_STAGES
        assert not any(s["cached"] for s in summaries)
    threads, dask = runs["threads"], runs["dask"]
    t_pub, d_pub = published(tmp_path / "threads"), published(tmp_path / "dask")

    by_stage = {s["stage"]: s for s in threads}
    # a real run: documents reach the tokens, rules and duplicates reject some along the way
    assert by_stage["ingest"]["rows_in"] == WEB_DOCS
    assert by_stage["dedup"]["rows_rejected"] > 0 and by_stage["filter"]["rows_rejected"] > 0
    assert by_stage["tokenize"]["rows_out"] > 0
    # every phase had several units to spread
    assert len(t_pub["ingest"]["views"]["data"]) >= 5 and len(t_pub["annotate"]["views"]["data"]) >= 5
    for stage in DATA_STAGES:
        assert d_pub[stage] == t_pub[stage], f"{stage}: the Dask run published different shards"
    strip = ("seconds", "path")
    assert [{k: v for k, v in s.items() if k not in strip} for s in dask] == [
        {k: v for k, v in s.items() if k not in strip} for s in threads
    ]


# -- pretraining under torchrun -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return make_token_dataset(tmp_path_factory.mktemp("tokens"), stdlib_paragraphs())


@pytest.mark.slow
def test_pretrain_stage_with_two_processes_matches_one_process(tokens, tmp_path):
    """nproc=2 x 4 rows under torchrun (gloo) == nproc=1 x 8 rows, through the stage."""
    short = {
        "gpt": {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0},
        "max_steps": 6,
        "log_interval": 3,
        "eval_interval": 6,
        "checkpoint_interval": 6,
    }
    one = run_stage(
        PretrainStage(), tiny_config(**short, batch_size=8), tmp_path / "one", {"tokenize": tokens}
    )
    # Validation runs batch_size-row batches on every rank: twice the batches, the same 32 rows.
    two = run_stage(
        PretrainStage(),
        tiny_config(**short, batch_size=4, eval_batches=8, nproc=2),
        tmp_path / "two",
        {"tokenize": tokens},
    )
    assert not two.cached and two.fingerprint != one.fingerprint
    for key in ("train_loss", "val_loss", "initial_val_loss"):
        assert math.isclose(two.stats[key], one.stats[key], rel_tol=1e-4), key
    assert two.stats["tokens"] == one.stats["tokens"]  # global tokens, counted once
    assert two.stats["world_size"] == 2 and one.stats["world_size"] == 1
    assert (two.path / "checkpoint" / "model.safetensors").is_file()
    assert two.dataset.num_rows() == one.dataset.num_rows()  # same metrics rows


def test_a_failing_torchrun_surfaces_the_workers_error_and_publishes_nothing(tokens, tmp_path):
    from pipeline.pretrain.launch import DistributedTrainingFailed
    from pipeline.pretrain.stage import work_dir
    from pipeline.stage import plan

    cfg = tiny_config(nproc=2, max_steps=2)
    # A resumable checkpoint whose weights file is garbage: every process fails loading it.
    fp = plan(PretrainStage(), cfg, tmp_path, {"tokenize": tokens}).fingerprint
    broken = work_dir(tmp_path, fp) / "step-0000001"
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    (broken / "model_config.json").write_text("{}")
    (broken / "train_state.json").write_text("{}")
    with pytest.raises(
        DistributedTrainingFailed, match=r"(?s)exited with status 1.*\[rank\d\]: .*SafetensorError"
    ):
        run_stage(PretrainStage(), cfg, tmp_path, {"tokenize": tokens})
    assert not list((tmp_path / "datasets" / "pretrain").glob("[0-9a-f]*"))
