"""FSDP2 pretraining on CPU: 2 gloo processes under torchrun, sharded checkpoints, resume."""

import os
import signal
import subprocess
import sys
import textwrap
from contextlib import nullcontext

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from test_pretrain import REPO, SEQ_LEN, make_token_dataset, stdlib_paragraphs, tiny_config

from pipeline.errors import ConfigError
from pipeline.models.checkpoint import SHARDED_DIR, load_model
from pipeline.pretrain.config import PretrainConfig
from pipeline.pretrain.data import PackedSequences
from pipeline.pretrain.generate import generate
from pipeline.pretrain.stage import PretrainStage, work_dir
from pipeline.pretrain.train import evaluate, latest_checkpoint, train
from pipeline.stage import run_stage


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return make_token_dataset(tmp_path_factory.mktemp("tokens"), stdlib_paragraphs())


def weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.path / "checkpoint" / "model.safetensors"))


def loss_rows(result) -> list[tuple[int, str, float]]:
    return [(r["step"], r["split"], r["loss"]) for r in pq.read_table(result.data_path).to_pylist()]


def test_activation_checkpointing_trains_to_bit_identical_weights(tokens, tmp_path):
    """Recomputing blocks in backward replays their dropout masks: nothing changes but memory."""
    cfg = tiny_config(max_steps=6, eval_interval=6, checkpoint_interval=6)  # dropout 0.1
    plain = train(cfg, tokens, tmp_path / "plain")
    recomputed = train(cfg.model_copy(update={"activation_checkpointing": True}), tokens, tmp_path / "ac")
    a = load_file(str(plain.checkpoint / "model.safetensors"))
    b = load_file(str(recomputed.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["loss"] for m in plain.metrics] == [m["loss"] for m in recomputed.metrics]


def test_fsdp_is_for_gpt_under_torchrun_and_its_checkpoints_resume_only_under_fsdp(tokens, tmp_path):
    with pytest.raises(ValueError, match="arch gpt only"):
        PretrainConfig(arch="lstm", strategy="fsdp")
    with pytest.raises(ValueError, match="arch gpt only"):
        PretrainConfig(arch="lstm", activation_checkpointing=True)
    with pytest.raises(ConfigError, match="torchrun"):
        train(tiny_config(strategy="fsdp"), tokens, tmp_path / "no-group")
    sharded = tmp_path / "work" / "step-0000002"
    (sharded / SHARDED_DIR).mkdir(parents=True)
    (sharded / "train_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path / "work") == sharded
    with pytest.raises(ConfigError, match="written by FSDP"):
        train(tiny_config(), tokens, tmp_path / "work")


# Run by torchrun in place of `-m pipeline.pretrain.train`: SIGTERM reaches rank 1 alone after step 4.
SIGTERM_RANK_1 = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import torch.distributed as dist
    from pipeline.observe import add_reporter
    from pipeline.pretrain.train import main

    def terminate_rank_1_after_step_4(event, data):
        if event == "progress" and data["done"] == 4 and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    add_reporter(terminate_rank_1_after_step_4)
    main(sys.argv[1:])
    """
)


@pytest.mark.slow
def test_two_fsdp_gloo_processes_match_one_process_and_resume_to_the_same_weights(tokens, tmp_path):
    """2 CPU processes x 4 rows under FSDP2 == 1 process x 8 rows, up to float summation order.

    Each process's gradient is the mean over its 4 rows and the reduce-scatter averages the two,
    where one process averages 8 rows at once: the same sums in another order, so losses and
    weights agree to float32 rounding, not bit for bit. Measured: losses within 1.2e-7 relative,
    weights within 1.2e-7 absolute (one ulp at 1.0) after 8 AdamW steps, as with DDP; the bounds
    leave a margin of about 8x. On CPU the order is fixed, so the result is the same every run.
    """
    common = {
        "gpt": {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0},
        "max_steps": 8,
        "log_interval": 2,
        "eval_interval": 4,
        "checkpoint_interval": 3,
    }
    # validation scores the same 16 rows: 2 batches of 8 or 4 batches of 4
    one = tiny_config(**common, batch_size=8, eval_batches=2)
    single = run_stage(PretrainStage(), one, tmp_path / "one", {"tokenize": tokens})
    cfg = tiny_config(
        **common, batch_size=4, eval_batches=4, nproc=2, strategy="fsdp", activation_checkpointing=True
    )
    sharded = run_stage(PretrainStage(), cfg, tmp_path / "fsdp", {"tokenize": tokens})

    assert sharded.stats["world_size"] == 2 and sharded.stats["strategy"] == "fsdp"
    assert sharded.stats["tokens"] == single.stats["tokens"] == 8 * 8 * SEQ_LEN  # global, counted once
    ours, theirs = loss_rows(sharded), loss_rows(single)
    assert [r[:2] for r in ours] == [r[:2] for r in theirs]
    assert [r[2] for r in ours] == pytest.approx([r[2] for r in theirs], rel=1e-6)
    a, b = weights(single), weights(sharded)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    # The published checkpoint is whole (what finetune, evaluate and generate read) and sharded.
    ckpt = sharded.path / "checkpoint"
    model, model_cfg = load_model(ckpt)
    assert (model_cfg.n_layer, model_cfg.n_embd, model_cfg.block_size) == (2, 32, SEQ_LEN)
    val = evaluate(model, PackedSequences(tokens, "val"), 4, 4, "cpu", nullcontext())
    assert val == pytest.approx(
        sharded.stats["val_loss"], rel=1e-6
    )  # the gathered weights are the trained ones
    assert isinstance(generate(ckpt, "def ", max_new_tokens=8, temperature=0), str)
    shards = sorted(p.name for p in (ckpt / SHARDED_DIR).iterdir())
    assert shards == [f"shard-0000{r}-model-00001-of-00001.safetensors" for r in (1, 2)]
    assert not [
        p for p in ckpt.rglob("*") if p.suffix in (".metadata", ".distcp", ".pt", ".pkl")
    ]  # no pickle

    # SIGTERM to rank 1 only: both ranks stop after the same step and save one sharded checkpoint.
    root = tmp_path / "interrupted"
    script = tmp_path / "sigterm_rank_1.py"
    script.write_text(SIGTERM_RANK_1.format(repo=str(REPO)))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        + [str(script), str(tokens.path), str(work_dir(root, sharded.fingerprint)), cfg.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert proc.returncode != 0 and proc.returncode != -signal.SIGKILL
    for rank in (0, 1):
        assert f"[rank{rank}]: pipeline.pretrain.train.TrainingInterrupted: SIGTERM at step 4" in proc.stderr
    step4 = latest_checkpoint(work_dir(root, sharded.fingerprint))
    assert step4.name == "step-0000004"
    assert (step4 / SHARDED_DIR).is_dir() and not (step4 / "model.safetensors").exists()  # only at the end

    # The stage resumes from the sharded checkpoint to the very weights of the uninterrupted run.
    resumed = run_stage(PretrainStage(), cfg, root, {"tokenize": tokens})
    assert resumed.fingerprint == sharded.fingerprint and resumed.stats["resumed_from_step"] == 4
    w = weights(resumed)
    assert w.keys() == b.keys() and all(torch.equal(w[k], b[k]) for k in b)
    again = loss_rows(resumed)
    assert [r[:2] for r in again] == [r[:2] for r in ours]
    # the interval cut by the interruption sums each rank's part in another order
    assert [r[2] for r in again] == pytest.approx([r[2] for r in ours], rel=1e-6)
