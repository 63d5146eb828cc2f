"""The pretrain stage: the packed-shard loader, the training loop, resume after SIGTERM / SIGKILL."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from pipeline.dataset import Dataset, Staging, manifest_header
from pipeline.errors import ConfigError
from pipeline.hashing import fingerprint
from pipeline.models.checkpoint import load_model
from pipeline.observe import add_reporter
from pipeline.pretrain.config import PretrainConfig
from pipeline.pretrain.data import BatchStream, PackedSequences, unigram_entropy, validation_batches
from pipeline.pretrain.generate import generate
from pipeline.pretrain.stage import PretrainStage, work_dir
from pipeline.pretrain.train import TrainingInterrupted, evaluate, latest_checkpoint, train
from pipeline.stage import run_stage
from pipeline.tokenize.tokenizer import build_char

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 32


# -- a small token dataset in the agreed tokenize layout ----------------------------------------
def stdlib_paragraphs() -> list[str]:
    """Real English and code: paragraphs of a few standard-library modules (present everywhere)."""
    import argparse
    import textwrap as tw

    text = "\n\n".join(Path(m.__file__).read_text() for m in (tw, argparse))
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) > 20]


def make_token_dataset(
    root: Path, docs: list[str], seq_len: int = SEQ_LEN, val_every: int = 10, seed: int = 0
) -> Dataset:
    """Character-level tokens packed into rows of seq_len + 1, as the tokenize stage lays them out."""
    tok = build_char([docs])
    fp = fingerprint(kind="test-tokens", docs=docs, seq_len=seq_len, seed=seed)
    st = Staging(root, "tokenize", fp)
    rng = np.random.default_rng(seed)
    dtype = pa.list_(pa.uint16())
    doc_rows, totals = [], {}
    for split in ("train", "val"):
        ids = [i for i in range(len(docs)) if (i % val_every == 0) == (split == "val")]
        stream = []
        for i in ids:
            enc = tok.encode(docs[i])
            doc_rows.append({"id": f"d{i}", "input_ids": enc, "n_tokens": len(enc), "split": split})
            stream += enc + [tok.eot_id]
        n = len(stream) // (seq_len + 1)
        rows = np.array(stream[: n * (seq_len + 1)], dtype=np.uint16).reshape(n, seq_len + 1)[
            rng.permutation(n)
        ]
        for k, start in enumerate(range(0, n, 96)):
            part = rows[start : start + 96]
            table = pa.table({"split": [split] * len(part), "input_ids": pa.array(list(part), type=dtype)})
            pq.write_table(table, st.view("data") / f"{split}-00000-{k:04d}.parquet", row_group_size=32)
        totals[f"tokens_{split}"] = len(stream)
        totals[f"sequences_{split}"] = n
    docs_schema = pa.schema(
        [("id", pa.string()), ("input_ids", dtype), ("n_tokens", pa.int32()), ("split", pa.string())]
    )
    pq.write_table(pa.Table.from_pylist(doc_rows, schema=docs_schema), st.view("docs") / "part-0000.parquet")
    tok.save(st.dir / "tokenizer")
    totals.update(
        docs=len(docs),
        seq_len=seq_len,
        vocab_size=tok.vocab_size,
        eot_id=tok.eot_id,
        tokenizer_fingerprint=tok.fingerprint,
    )
    n_docs = len(docs)
    manifest = {
        **manifest_header("tokenize", fp),
        "totals": totals,
        "counts": {"rows_in": n_docs, "rows_out": n_docs, "rows_rejected": 0, "rejected_by_reason": {}},
    }
    data_schema = pa.schema([("split", pa.string()), ("input_ids", dtype)])
    return st.publish(manifest, {"data": data_schema, "docs": docs_schema})


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Dataset:
    return make_token_dataset(tmp_path_factory.mktemp("tokens"), stdlib_paragraphs())


def tiny_config(**kw) -> PretrainConfig:
    base = {
        "gpt": {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.1},
        "batch_size": 8,
        "max_steps": 80,
        "warmup_steps": 8,
        "learning_rate": 1e-2,
        "min_lr": 1e-3,
        "log_interval": 10,
        "eval_interval": 40,
        "eval_batches": 4,
        "checkpoint_interval": 10,
        "device": "cpu",
        "deterministic": True,
        "threads": 1,
    }
    return PretrainConfig.model_validate({**base, **kw})


def final_weights(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.path / "checkpoint" / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


# -- the loader ----------------------------------------------------------------------------------
def test_an_epoch_visits_every_training_row_once_in_a_seeded_order(tokens):
    seqs = PackedSequences(tokens, "train")
    assert seqs.seq_len == SEQ_LEN and seqs.num_rows == tokens.manifest["totals"]["sequences_train"]
    assert len(seqs.groups) > 3  # several shards and row groups, so the order matters
    every = np.concatenate(list(seqs.iter_rows()))
    s = BatchStream(seqs, batch_size=7, seed=1)
    n_batches = math.ceil(seqs.num_rows / 7)
    seen = torch.cat([s.next_batch() for _ in range(n_batches)])[: seqs.num_rows].numpy()
    assert sorted(map(bytes, seen.astype(np.uint16))) == sorted(map(bytes, every))
    assert not np.array_equal(seen, every.astype(np.int64))  # shuffled
    epoch2 = BatchStream(seqs, batch_size=7, seed=1, position={"epoch": 1, "group": 0, "row": 0}).next_batch()
    assert not torch.equal(epoch2, torch.from_numpy(seen[:7]))  # each epoch in a new order
    other_seed = BatchStream(seqs, batch_size=7, seed=2).next_batch()
    assert not torch.equal(other_seed, torch.from_numpy(seen[:7]))


def test_a_stream_restarted_from_its_position_continues_identically(tokens):
    seqs = PackedSequences(tokens, "train")
    a = BatchStream(seqs, batch_size=13, seed=5)
    for _ in range(9):  # across row groups and into a second epoch
        a.next_batch()
    pos = a.position()
    assert json.loads(json.dumps(pos)) == pos
    b = BatchStream(seqs, batch_size=13, seed=5, position=pos)
    for _ in range(30):
        assert torch.equal(a.next_batch(), b.next_batch())


def test_data_parallel_ranks_split_the_single_process_batches(tokens):
    seqs = PackedSequences(tokens, "train")
    one = BatchStream(seqs, batch_size=8, seed=3)
    ranks = [BatchStream(seqs, batch_size=4, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(12):
        assert torch.equal(one.next_batch(), torch.cat([r.next_batch() for r in ranks]))


def test_windows_are_seeded_random_slices_of_the_rows_and_resume_identically(tokens):
    seqs = PackedSequences(tokens, "train")
    rows = BatchStream(seqs, batch_size=7, seed=4)
    windows = BatchStream(seqs, batch_size=7, seed=4, window=8)
    offsets = []
    for _ in range(math.ceil(seqs.num_rows / 7) + 3):  # into a second epoch
        full, win = rows.next_batch().numpy(), windows.next_batch().numpy()
        assert win.shape == (7, 9)
        for r, w in zip(full, win):  # each window lies in the row the plain stream gives there
            starts = [o for o in range(SEQ_LEN - 8 + 1) if np.array_equal(r[o : o + 9], w)]
            assert starts
            offsets.append(starts[0])
    assert len(set(offsets)) > SEQ_LEN // 2  # offsets spread over the row, not fixed
    again = BatchStream(seqs, batch_size=7, seed=4, window=8, position=windows.position())
    for _ in range(10):
        assert torch.equal(windows.next_batch(), again.next_batch())
    whole = BatchStream(seqs, batch_size=7, seed=4, window=SEQ_LEN)  # a full-row window is the row
    assert torch.equal(whole.next_batch(), BatchStream(seqs, batch_size=7, seed=4).next_batch())


def test_a_shorter_context_trains_on_windows_and_scores_every_val_token(tokens, tmp_path):
    cfg = tiny_config(context_len=8, max_steps=20, eval_interval=20, checkpoint_interval=20)
    r = run_stage(PretrainStage(), cfg, tmp_path, {"tokenize": tokens})
    model, model_cfg = load_model(r.path / "checkpoint")
    assert model_cfg.block_size == 8
    assert r.stats["tokens"] == 20 * 8 * 8
    assert r.stats["val_loss"] < r.stats["initial_val_loss"]
    # validation: every target token of the evaluated rows, in consecutive 8-token windows
    rows = torch.cat(list(validation_batches(PackedSequences(tokens, "val"), 8, 4)))
    with torch.no_grad():
        _, loss = model(rows[:, :-1].reshape(-1, 8), rows[:, 1:].reshape(-1, 8))
    assert loss.item() == pytest.approx(r.stats["val_loss"], rel=1e-5)
    with pytest.raises(ConfigError, match="context_len"):
        train(tiny_config(context_len=SEQ_LEN + 1), tokens, tmp_path / "too-long")


def test_validation_batches_are_fixed_and_unigram_entropy_is_exact(tokens):
    val = PackedSequences(tokens, "val")
    a = list(validation_batches(val, 5, 3))
    assert len(a) == 3 and all(b.shape == (5, SEQ_LEN + 1) for b in a)
    assert all(torch.equal(x, y) for x, y in zip(a, validation_batches(val, 5, 3)))
    everything = torch.cat(list(validation_batches(val, 5, 10_000)))
    assert len(everything) == val.num_rows  # the short tail batch is kept
    counts = np.bincount(everything[:, 1:].numpy().ravel())
    p = counts[counts > 0] / counts.sum()
    assert unigram_entropy(val) == pytest.approx(float(-(p * np.log(p)).sum()))


# -- the stage -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tokens, tmp_path_factory):
    """One uninterrupted run of the tiny config, shared by the resume tests."""
    root = tmp_path_factory.mktemp("reference")
    return run_stage(PretrainStage(), tiny_config(), root, {"tokenize": tokens})


def test_stage_trains_learns_and_publishes_model_metrics_and_plot(tokens, reference, tmp_path):
    r = reference
    m = r.dataset.manifest
    assert m["counts"]["rows_in"] == m["counts"]["rows_out"] == tokens.manifest["totals"]["sequences_train"]
    table = pq.read_table(r.data_path)
    assert table.column_names[:4] == ["step", "split", "loss", "perplexity"]
    rows = table.to_pylist()
    assert [x["step"] for x in rows if x["split"] == "train"] == list(range(10, 81, 10))
    assert [x["step"] for x in rows if x["split"] == "val"] == [0, 40, 80]
    assert all(x["tokens_per_s"] > 0 for x in rows if x["split"] == "train")
    assert all(x["mfu"] is None for x in rows)  # CPU: no MFU
    # it learns: from about ln(vocab) to well below the unigram entropy of the val split
    s = r.stats
    assert s["initial_val_loss"] == pytest.approx(math.log(tokens.manifest["totals"]["vocab_size"]), abs=0.3)
    assert s["val_loss"] < s["unigram_entropy"] - 0.2 and s["beats_unigram"] is True
    assert (r.path / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    csv_lines = (r.path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,split,loss") and len(csv_lines) == len(rows) + 1
    # the checkpoint is complete and holds the final model: it scores the val loss reported
    model, cfg = load_model(r.path / "checkpoint")
    val = evaluate(model, PackedSequences(tokens, "val"), 8, 4, "cpu", nullcontext())
    assert val == pytest.approx(s["val_loss"], rel=1e-5)
    assert (cfg.n_layer, cfg.n_embd, cfg.block_size) == (2, 32, SEQ_LEN)
    assert cfg.vocab_size == tokens.manifest["totals"]["vocab_size"]
    assert (r.path / "checkpoint" / "tokenizer" / "tokenizer.json").is_file()
    assert json.loads((r.path / "checkpoint" / "train_state.json").read_text())["step"] == 80
    # a second run is a cache hit
    again = run_stage(PretrainStage(), tiny_config(), r.path.parent.parent.parent, {"tokenize": tokens})
    assert again.cached and again.fingerprint == r.fingerprint


def test_generate_samples_reproducibly_from_the_checkpoint(reference):
    ckpt = reference.path / "checkpoint"
    a = generate(ckpt, "def ", max_new_tokens=40, temperature=0.8, top_k=20, seed=7)
    assert isinstance(a, str) and 0 < len(a) <= 40
    assert a == generate(ckpt, "def ", max_new_tokens=40, temperature=0.8, top_k=20, seed=7)
    greedy = generate(ckpt, "def ", max_new_tokens=40, temperature=0, seed=1)
    assert greedy == generate(ckpt, "def ", max_new_tokens=40, temperature=0, seed=2)


def test_unused_model_section_is_not_part_of_the_fingerprint(tokens, tmp_path):
    from pipeline.stage import plan

    a = plan(PretrainStage(), tiny_config(), tmp_path, {"tokenize": tokens})
    b = plan(PretrainStage(), tiny_config(lstm={"n_hidden": 64}), tmp_path, {"tokenize": tokens})
    c = plan(
        PretrainStage(),
        tiny_config(gpt={"n_layer": 1, "n_head": 2, "n_embd": 32}),
        tmp_path,
        {"tokenize": tokens},
    )
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_lstm_trains_through_the_stage(tokens, tmp_path):
    cfg = tiny_config(
        arch="lstm", lstm={"n_layer": 1, "n_embd": 32, "n_hidden": 64}, max_steps=10, eval_interval=10
    )
    r = run_stage(PretrainStage(), cfg, tmp_path, {"tokenize": tokens})
    model, _ = load_model(r.path / "checkpoint")
    assert type(model).__name__ == "LSTMLanguageModel"
    assert r.stats["val_loss"] < r.stats["initial_val_loss"]


def test_sigterm_saves_a_checkpoint_and_a_rerun_resumes_to_the_same_weights(tokens, reference, tmp_path):
    def terminate_at_step_7(event, data):
        if event == "progress" and data["done"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    remove = add_reporter(terminate_at_step_7)
    try:
        with pytest.raises(TrainingInterrupted, match="step 7"):
            run_stage(PretrainStage(), tiny_config(), tmp_path, {"tokenize": tokens})
    finally:
        remove()
    assert not list((tmp_path / "datasets" / "pretrain").glob("[0-9a-f]*"))  # nothing published
    assert latest_checkpoint(work_dir(tmp_path, reference.fingerprint)).name == "step-0000007"
    resumed = run_stage(PretrainStage(), tiny_config(), tmp_path, {"tokenize": tokens})
    assert resumed.stats["resumed_from_step"] == 7
    assert_same_weights(final_weights(resumed), final_weights(reference))
    ref_rows = pq.read_table(reference.data_path).to_pylist()
    rows = pq.read_table(resumed.data_path).to_pylist()
    assert [(x["step"], x["split"], x["loss"]) for x in rows] == [
        (x["step"], x["split"], x["loss"]) for x in ref_rows
    ]


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from pipeline.dataset import Dataset
    from pipeline.observe import add_reporter
    from pipeline.pretrain.config import PretrainConfig
    from pipeline.pretrain.stage import PretrainStage
    from pipeline.stage import run_stage

    def kill_at_step_13(event, data):
        if event == "progress" and data["done"] == 13:
            os.kill(os.getpid(), signal.SIGKILL)  # no handler, no cleanup: a crash

    add_reporter(kill_at_step_13)
    cfg = PretrainConfig.model_validate_json(sys.argv[3])
    run_stage(PretrainStage(), cfg, sys.argv[1], {{"tokenize": Dataset(sys.argv[2])}})
    """
)


def test_sigkilled_training_resumes_from_its_last_checkpoint_to_the_same_weights(tokens, reference, tmp_path):
    cfg = tiny_config()
    script = KILLER.format(repo=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(tokens.path), cfg.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    wd = work_dir(tmp_path, reference.fingerprint)
    assert latest_checkpoint(wd).name == "step-0000010"  # steps 11-13 were lost with the process
    assert len(list(wd.glob("step-*"))) <= cfg.keep_checkpoints
    resumed = run_stage(PretrainStage(), cfg, tmp_path, {"tokenize": tokens})
    assert resumed.stats["resumed_from_step"] == 10 and not resumed.cached
    assert resumed.fingerprint == reference.fingerprint
    assert_same_weights(final_weights(resumed), final_weights(reference))


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tokens, tmp_path):
    """torchrun, 2 CPU processes x 4 rows == 1 process x 8 rows (up to float summation order)."""
    from pipeline.pretrain.train import train

    cfg = tiny_config(
        gpt={"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0},
        max_steps=6,
        log_interval=3,
        eval_interval=6,
        checkpoint_interval=6,
    )
    single = train(cfg.model_copy(update={"batch_size": 8}), tokens, tmp_path / "one")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "pipeline.pretrain.train",
            str(tokens.path),
            str(tmp_path / "two"),
            cfg.model_copy(update={"batch_size": 4}).model_dump_json(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = latest_checkpoint(tmp_path / "two")
    assert two.name == "step-0000006"
    a = load_file(str(single.checkpoint / "model.safetensors"))
    b = load_file(str(two / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    state = json.loads((two / "train_state.json").read_text())
    assert state["tokens"] == 6 * 8 * SEQ_LEN  # global tokens, counted once


def test_packed_sequences_read_every_version_of_an_incremental_token_series(tmp_path):
    from pipeline.ingest.config import IngestConfig, SourceConfig
    from pipeline.ingest.stage import IngestStage
    from pipeline.tokenize.config import TokenizeConfig
    from pipeline.tokenize.stage import TokenizeStage

    raw = tmp_path / "raw"
    raw.mkdir()
    paras = stdlib_paragraphs()
    (raw / "a.txt").write_text("\n\n".join(paras[:40]))
    cfg = IngestConfig(sources=[SourceConfig(path=str(raw), text_mode="paragraphs")])
    root = tmp_path / "root"
    tok_cfg = TokenizeConfig(tokenizer="char", seq_len=32, val_fraction=0.1)
    run_stage(IngestStage(), cfg, root, {})
    (raw / "b.txt").write_text("\n\n".join(paras[40:80]))
    v2 = run_stage(IngestStage(), cfg, root, {})
    tokens = run_stage(TokenizeStage(), tok_cfg, root, {"decontaminate": v2.dataset}).dataset
    versions = tokens.chain()
    assert len(versions) == 2
    assert all(any(p.name.startswith("train-") for p in v.shard_paths()) for v in versions)
    rows = [v.manifest["totals"]["sequences_train"] for v in versions]
    assert PackedSequences(tokens, "train").num_rows == sum(rows)
