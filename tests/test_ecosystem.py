"""Models and tokens out of tokenmill and into it: transformers directories, Megatron and nanoGPT files."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.finetune.heads import SequenceClassifier, save_finetuned
from pipeline.finetune.lora import apply_lora, merge_lora
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.hf import export_checkpoint, import_hf, load_init
from pipeline.stage import run_stage
from pipeline.tokenize import TokenizeConfig, TokenizeStage, load_tokenizer
from pipeline.tokenize.export import export_megatron, export_nanogpt, read_megatron

# Exports are written without transformers; opening them needs it (the hf extra, in dev).
needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers is not installed"
)

REPO = Path(__file__).resolve().parents[1]
SHAPE = {"block_size": 96, "n_layer": 2, "n_head": 4, "n_embd": 32}
STYLES = {
    "gpt2": {"style": "gpt2"},
    "llama": {"style": "llama"},
    "gpt2-bias-tanh": {"style": "gpt2", "bias": True, "gelu": "tanh"},
    "llama-gqa-untied": {"style": "llama", "bias": True, "n_kv_head": 2, "tie_embeddings": False},
}
PROMPT = "def wrap(text, width=70, **kwargs):\n    Return a list of wrapped lines."


def paragraphs() -> list[str]:
    """Real English and code: the paragraphs of two standard-library modules."""
    import argparse

    text = "\n\n".join(Path(m.__file__).read_text() for m in (textwrap, argparse))
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) > 20]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Published tokenize datasets of the real pipeline: a BPE one and a character one."""
    root = tmp_path_factory.mktemp("root")
    src = root / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(paragraphs())))
    docs = run_stage(
        IngestStage(), IngestConfig(sources=[SourceConfig(path=str(src), id_field="id")]), root, {}
    )
    out = {"docs": docs.dataset}
    for kind in ("bpe", "char"):
        cfg = TokenizeConfig(
            tokenizer=kind,
            vocab_size=400,
            seq_len=32,
            val_fraction=0.1,
            shard_sequences=128,
            row_group_rows=32,
        )
        out[kind] = run_stage(TokenizeStage(), cfg, root, {"decontaminate": docs.dataset}).dataset
    return out


def checkpoint(
    tmp: Path, tok_dir: Path, seed: int = 0, arch: str = "gpt", **shape
) -> tuple[torch.nn.Module, Path]:
    """A tiny model with weights moved off their init (biases, norms and all), saved as a checkpoint."""
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(seed)
    model = build_model(arch, vocab_size=tok.vocab_size, **shape).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model, save_checkpoint(tmp / f"ckpt-{seed}", model, tokenizer_dir=tok_dir)


def logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0]


def cli(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


# -- export to transformers ------------------------------------------------------------------------
@needs_transformers
@pytest.mark.parametrize("kind", ["bpe", "char"])
@pytest.mark.parametrize("variant", list(STYLES))
def test_export_loads_in_transformers_with_the_same_logits(tokens, tmp_path, kind, variant):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok_dir = tokens[kind].path / "tokenizer"
    tok = load_tokenizer(tok_dir)
    model, ckpt = checkpoint(tmp_path, tok_dir, **SHAPE, **STYLES[variant])
    out = tmp_path / "hf"
    info = export_checkpoint(ckpt, out)
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    hf = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    expected = "GPT2LMHeadModel" if STYLES[variant]["style"] == "gpt2" else "LlamaForCausalLM"
    assert type(hf).__name__ == info["architecture"] == expected
    ids = hf_tok(PROMPT)["input_ids"]
    assert ids == tok.encode(PROMPT) and len(ids) <= SHAPE["block_size"]
    assert hf_tok.decode(ids) == PROMPT == tok.decode(ids)
    assert hf_tok.eos_token_id == tok.eot_id == hf.config.eos_token_id
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits[0].float()
    diff = (logits(model, ids) - theirs).abs().max().item()
    assert diff <= 1e-4, diff
    # and back: the imported model is the exported one, weight for weight
    back = import_hf(out)
    assert back.config == model.config
    assert torch.equal(logits(back, ids), logits(model, ids))


@needs_transformers
def test_pipeline_text_generation_writes_text(tokens, tmp_path):
    from transformers import pipeline

    _, ckpt = checkpoint(tmp_path, tokens["bpe"].path / "tokenizer", **SHAPE)
    export_checkpoint(ckpt, tmp_path / "hf")
    gen = pipeline("text-generation", model=str(tmp_path / "hf"), device="cpu")
    text = gen("def wrap(", max_new_tokens=12, do_sample=False)[0]["generated_text"]
    assert text.startswith("def wrap(") and len(text) > len("def wrap(")


def test_lstm_export_is_a_clear_error(tokens, tmp_path):
    _, ckpt = checkpoint(
        tmp_path,
        tokens["bpe"].path / "tokenizer",
        arch="lstm",
        block_size=32,
        n_layer=1,
        n_embd=16,
        n_hidden=16,
    )
    with pytest.raises(ConfigError, match="LSTMLanguageModel has no transformers equivalent"):
        export_checkpoint(ckpt, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# -- fine-tuned classifiers ------------------------------------------------------------------------
@needs_transformers
@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_lora_classifier_exports_merged_as_sequence_classification(tokens, tmp_path, style):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok_dir = tokens["bpe"].path / "tokenizer"
    tok = load_tokenizer(tok_dir)
    backbone, _ = checkpoint(tmp_path, tok_dir, **SHAPE, style=style)
    labels = ["argparse", "textwrap", "other"]
    clf = SequenceClassifier(backbone, len(labels), pooling="last", dropout=0.0).eval()
    apply_lora(backbone, ["c_attn", "c_fc"], rank=2, alpha=4)
    with torch.no_grad():
        for name, p in clf.named_parameters():
            if "lora_B" in name or name.startswith("head."):
                p.normal_(0, 0.2)
    texts = ["Wrap a single paragraph of text.", "parser.add_argument('--width', type=int)", "x"]
    enc = [np.array(tok.encode(t) + [tok.eot_id]) for t in texts]
    width = max(map(len, enc))
    x = torch.tensor(np.stack([np.pad(e, (0, width - len(e)), constant_values=tok.eot_id) for e in enc]))
    with torch.no_grad():
        before_merge = clf(x, torch.tensor([len(e) for e in enc]))
    merge_lora(clf)
    meta = {"task": "classify", "labels": labels, "pooling": "last", "max_len": SHAPE["block_size"]}
    save_finetuned(tmp_path / "ft", clf, meta, tokenizer_dir=tok_dir)
    info = export_checkpoint(tmp_path / "ft", tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert (
        type(hf).__name__
        == info["architecture"]
        == f"{'GPT2' if style == 'gpt2' else 'Llama'}ForSequenceClassification"
    )
    assert hf.config.id2label == dict(enumerate(labels)) and hf.config.label2id == {
        k: i for i, k in enumerate(labels)
    }
    batch = hf_tok(texts, padding=True, return_tensors="pt")
    assert [row[: len(e)] for row, e in zip(batch["input_ids"].tolist(), enc)] == [e.tolist() for e in enc]
    with torch.no_grad():
        theirs = hf(**batch).logits
    assert (theirs - before_merge).abs().max().item() <= 1e-4


def test_mean_pooled_classifier_is_refused_with_the_fix(tokens, tmp_path):
    tok_dir = tokens["bpe"].path / "tokenizer"
    backbone, _ = checkpoint(tmp_path, tok_dir, **SHAPE)
    clf = SequenceClassifier(backbone, 2, pooling="mean")
    save_finetuned(
        tmp_path / "ft",
        clf,
        {"task": "classify", "labels": ["a", "b"], "pooling": "mean", "max_len": 8},
        tok_dir,
    )
    with pytest.raises(ConfigError, match="pooling: last"):
        export_checkpoint(tmp_path / "ft", tmp_path / "hf")


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_incomplete_or_inconsistent_checkpoint_is_exit_2_naming_the_file(tokens, tmp_path):
    _, ckpt = checkpoint(tmp_path, tokens["bpe"].path / "tokenizer", **SHAPE)
    cfg = json.loads((ckpt / "model_config.json").read_text())
    (ckpt / "model_config.json").write_text(json.dumps({**cfg, "n_embd": 64}))
    r = cli("export", ckpt, "--to", "hf", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert "model.safetensors: does not match its model config" in r.stderr.replace("\n", "")
    assert re.search(r"transformer\.\S+ has shape \[32\S*\], expected \[64", r.stderr)
    (ckpt / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=re.escape(str(ckpt / "tokenizer" / "tokenizer.json"))):
        export_checkpoint(ckpt, tmp_path / "out")
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=re.escape(str(ckpt / "model.safetensors"))):
        export_checkpoint(ckpt, tmp_path / "out")
    (ckpt / "model_config.json").unlink()
    with pytest.raises(ConfigError, match=re.escape(str(ckpt / "model_config.json"))):
        export_checkpoint(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"})
    )
    with pytest.raises(
        ConfigError, match=r"BertForMaskedLM.*not supported.*GPT2LMHeadModel, LlamaForCausalLM"
    ):
        load_init(tmp_path)


# -- import: continued pretraining --------------------------------------------------------------------
def pretrain_config(**kw):
    from pipeline.pretrain.config import PretrainConfig

    base = {
        "batch_size": 8,
        "max_steps": 6,
        "warmup_steps": 1,
        "learning_rate": 1e-3,
        "min_lr": 1e-4,
        "log_interval": 3,
        "eval_interval": 3,
        "eval_batches": 2,
        "checkpoint_interval": 6,
        "device": "cpu",
        "threads": 1,
    }
    return PretrainConfig.model_validate({**base, **kw})


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_init_from_an_exported_model_continues_from_its_weights(tokens, tmp_path, style):
    from pipeline.pretrain.stage import PretrainStage

    tok_dir = tokens["bpe"].path / "tokenizer"
    model, ckpt = checkpoint(tmp_path, tok_dir, **SHAPE, style=style)
    export_checkpoint(ckpt, tmp_path / "hf")
    # the tokenize stage uses that model's tokenizer: tokenizer: pretrained, from the HF directory
    docs = tokens["docs"]
    pre_tokens = run_stage(
        TokenizeStage(),
        TokenizeConfig(
            tokenizer="pretrained",
            tokenizer_path=str(tmp_path / "hf"),
            seq_len=32,
            val_fraction=0.1,
            shard_sequences=128,
            row_group_rows=32,
        ),
        tokens["bpe"].root,
        {"decontaminate": docs},
    ).dataset
    res = run_stage(
        PretrainStage(),
        pretrain_config(init_from=str(tmp_path / "hf"), export_hf=True),
        tmp_path / "root",
        {"tokenize": pre_tokens},
    )
    from contextlib import nullcontext

    from pipeline.pretrain.data import PackedSequences
    from pipeline.pretrain.train import evaluate

    start = evaluate(model, PackedSequences(pre_tokens, "val"), 8, 2, "cpu", nullcontext(), 32)
    assert res.stats["initial_val_loss"] == pytest.approx(
        start, rel=1e-5
    )  # the imported weights, not random ones
    assert res.stats["val_loss"] < start
    assert res.stats["init_from"] == str(tmp_path / "hf")
    trained, _ = load_init(res.path / "checkpoint")
    assert trained.config == model.config  # the imported shape, not the pretrain.gpt defaults
    # export_hf wrote the continued model beside the checkpoint; it round-trips exactly
    ids = load_tokenizer(tok_dir).encode(PROMPT)
    assert torch.equal(logits(import_hf(res.path / "hf"), ids), logits(trained, ids))


def test_init_from_with_no_steps_publishes_the_imported_model_unchanged(tokens, tmp_path):
    from pipeline.pretrain.stage import PretrainStage

    model, ckpt = checkpoint(tmp_path, tokens["bpe"].path / "tokenizer", **{**SHAPE, "block_size": 32})
    res = run_stage(
        PretrainStage(),
        pretrain_config(init_from=str(ckpt), max_steps=0),
        tmp_path / "root",
        {"tokenize": tokens["bpe"]},
    )
    assert res.stats["steps"] == 0 and res.stats["val_loss"] == res.stats["initial_val_loss"]
    published, _ = load_init(res.path / "checkpoint")
    ids = load_tokenizer(tokens["bpe"].path / "tokenizer").encode(PROMPT)[:32]
    assert torch.equal(logits(published, ids), logits(model, ids))
    with pytest.raises(ValueError, match="needs init_from"):
        pretrain_config(max_steps=0)


def test_init_from_with_another_vocabulary_is_refused_with_both_sizes(tokens, tmp_path):
    from pipeline.pretrain.stage import PretrainStage

    _, ckpt = checkpoint(tmp_path, tokens["char"].path / "tokenizer", **SHAPE)
    export_checkpoint(ckpt, tmp_path / "hf")
    char_vocab = load_tokenizer(tokens["char"].path / "tokenizer").vocab_size
    bpe_vocab = tokens["bpe"].manifest["totals"]["vocab_size"]
    with pytest.raises(ConfigError, match=rf"{char_vocab:,} ids.*{bpe_vocab:,} ids.*tokenizer: pretrained"):
        run_stage(
            PretrainStage(),
            pretrain_config(init_from=str(tmp_path / "hf")),
            tmp_path / "root",
            {"tokenize": tokens["bpe"]},
        )


# -- token shards for other trainers --------------------------------------------------------------------
def docs_by_split(dataset) -> dict[str, list[list[int]]]:
    out = {"train": [], "val": []}
    for path in dataset.shard_paths("docs"):
        t = pq.read_table(path, columns=["input_ids", "split"])
        for ids, split in zip(t.column("input_ids").to_pylist(), t.column("split").to_pylist()):
            out[split].append(ids)
    return out


def megatron_reader(prefix: Path):
    """Megatron-Core's own reader where it installs, else the published layout read by hand."""
    try:
        from megatron.core.datasets.indexed_dataset import IndexedDataset
    except ImportError:
        ids, lengths, pointers = read_megatron(prefix)
        item = ids.dtype.itemsize
        return [ids[p // item : p // item + n].tolist() for p, n in zip(pointers, lengths)], lengths
    ds = IndexedDataset(str(prefix))
    return [ds[i].tolist() for i in range(len(ds))], ds.sequence_lengths


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_megatron_export_reads_back_as_the_parquet_documents(tokens, tmp_path, kind):
    ds = tokens[kind]
    info = export_megatron(ds, tmp_path / "mg")
    expected = docs_by_split(ds)
    totals = ds.manifest["totals"]
    for split in ("train", "val"):
        seqs, lengths = megatron_reader(tmp_path / "mg" / split)
        assert seqs == expected[split]  # one document per sequence, same ids, same order
        assert int(np.sum(lengths)) == totals[f"tokens_{split}"] == info["splits"][split]["tokens"]
        assert len(seqs) == totals[f"docs_{split}"] == info["splits"][split]["documents"]
    header = (tmp_path / "mg" / "train.idx").read_bytes()[:18]
    assert header[:9] == b"MMIDIDX\x00\x00" and header[17] == 8  # uint16 ids
    assert (tmp_path / "mg" / "tokenizer" / "tokenizer.json").is_file()
    # with --append-eot each sequence ends with end-of-text (Megatron's --append-eod)
    export_megatron(ds, tmp_path / "eot", append_eot=True)
    seqs, _ = megatron_reader(tmp_path / "eot" / "val")
    assert seqs == [d + [totals["eot_id"]] for d in expected["val"]]


@pytest.mark.slow
def test_nanogpt_export_is_documents_joined_by_end_of_text(tokens, tmp_path):
    ds = tokens["char"]
    r = cli("export", ds.path, "--to", "nanogpt", tmp_path / "ng")
    assert r.returncode == 0, r.stderr
    eot = ds.manifest["totals"]["eot_id"]
    for split, docs in docs_by_split(ds).items():
        data = np.memmap(tmp_path / "ng" / f"{split}.bin", dtype=np.uint16, mode="r")
        assert data.tolist() == [t for d in docs for t in d + [eot]]
    import pickle

    meta = pickle.loads((tmp_path / "ng" / "meta.pkl").read_bytes())  # our own file, plain dicts
    tok = load_tokenizer(ds.path / "tokenizer")
    assert (
        meta["vocab_size"] == tok.vocab_size
        and "".join(meta["itos"][i] for i in tok.encode("Wrap")) == "Wrap"
    )


def test_nanogpt_refuses_a_vocabulary_beyond_uint16(tokens, tmp_path, monkeypatch):
    ds = tokens["bpe"]
    manifest = {**ds.manifest, "totals": {**ds.manifest["totals"], "vocab_size": 70_000}}
    monkeypatch.setattr(type(ds), "manifest", property(lambda self: manifest))
    with pytest.raises(ConfigError, match=r"70,000 ids.*uint16"):
        export_nanogpt(ds, tmp_path / "ng")


# -- the fine-tune stage's export, and lm-eval in the evaluate stage ---------------------------------------
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A fine-tuned last-token classifier with export_hf, through the real stages."""
    from test_finetune import TINY, make_labeled, make_pretrain, sentiment_rows

    from pipeline.finetune.config import FinetuneConfig
    from pipeline.finetune.stage import FinetuneStage

    root = tmp_path_factory.mktemp("tuned")
    rows = sentiment_rows(160)
    pre = make_pretrain(root, [r["text"] for r in rows], steps=20)
    lab = make_labeled(root, rows)
    cfg = FinetuneConfig(**{**TINY, "max_steps": 20}, pooling="last", export_hf=True, baseline=False)
    ft = run_stage(FinetuneStage(), cfg, root, {"pretrain": pre, "labeled": lab})
    return root, ft, lab


@needs_transformers
def test_finetune_export_hf_writes_a_sequence_classifier_that_agrees(tuned):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.finetune.heads import load_finetuned

    _, ft, _ = tuned
    assert ft.stats["hf"] == "hf"
    hf = AutoModelForSequenceClassification.from_pretrained(ft.path / "hf", local_files_only=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(ft.path / "hf", local_files_only=True)
    assert hf.config.id2label == {0: "neg", 1: "pos"}
    model, _ = load_finetuned(ft.path / "checkpoint")
    texts = ["The film number 3 was lovely.", "The car number 8 was broken and ugly."]
    batch = hf_tok(texts, padding=True, return_tensors="pt")
    lengths = batch["attention_mask"].sum(1)
    x = batch["input_ids"].masked_fill(
        batch["attention_mask"] == 0, hf_tok.eos_token_id
    )  # tokenmill pads with eot
    with torch.no_grad():
        ours = model(x, lengths)
        theirs = hf(**batch).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_export_hf_with_mean_pooling_is_a_config_error():
    from pydantic import ValidationError

    from pipeline.finetune.config import FinetuneConfig

    with pytest.raises(ValidationError, match="pooling: last"):
        FinetuneConfig(export_hf=True)


@needs_transformers
@pytest.mark.slow
def test_evaluate_runs_the_offline_lm_eval_tasks_into_table_manifest_and_report(tuned):
    pytest.importorskip("lm_eval")
    from pipeline.evaluate.config import EvaluateConfig
    from pipeline.evaluate.stage import EvaluateStage
    from pipeline.report import render_report

    root, ft, lab = tuned
    # The label-efficiency curve (tests/test_evaluate.py) would be most of this test's time.
    cfg = EvaluateConfig(
        samples=0,
        lm_eval={"tasks": ["tokenmill_pycloze", "tokenmill_pycloze_ppl"], "batch_size": 16},
        curve={"enabled": False},
    )
    res = run_stage(EvaluateStage(), cfg, root, {"finetune": ft.dataset, "labeled": lab})
    lm = res.stats["lm_eval"]
    scores = lm["models"]["pretrained"]
    assert lm["samples"] == {"tokenmill_pycloze": 40, "tokenmill_pycloze_ppl": 40}
    assert 0.0 <= scores["tokenmill_pycloze"]["acc"] <= 1.0 and "acc_norm" in scores["tokenmill_pycloze"]
    assert scores["tokenmill_pycloze_ppl"]["bits_per_byte"] > 0
    rows = [r for r in pq.read_table(res.data_path).to_pylist() if r["split"] == "lm_eval"]
    assert {"tokenmill_pycloze:acc", "tokenmill_pycloze_ppl:word_perplexity"} <= {r["metric"] for r in rows}
    manifest = json.loads((res.path / "_manifest.json").read_text())
    assert manifest["stats"]["lm_eval"]["models"]["pretrained"] == scores
    report = render_report(root, [res], "test", root)
    assert "lm-eval-harness" in report and "| pretrained | tokenmill_pycloze | 40 | acc |" in report
    # The scores are the model's own: bits per byte equals tokenmill's model's loss on those lines,
    # scored in lm-eval's rolling windows of the model's context after an end-of-text token.
    from lm_eval.utils import get_rolling_token_windows

    from pipeline.evaluate.harness import TASKS_DIR
    from pipeline.models.checkpoint import load_model

    model, mcfg = load_model(root / ft.stats["pretrained_checkpoint"])
    tok = load_tokenizer(root / ft.stats["pretrained_checkpoint"] / "tokenizer")
    total_nats, total_bytes = 0.0, 0
    for line in (TASKS_DIR / "pycloze.jsonl").read_text().splitlines():
        d = json.loads(line)
        text = d["context"] + d["choices"][d["label"]]
        for inp, pred in get_rolling_token_windows(tok.encode(text), tok.eot_id, mcfg.block_size, 1):
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([inp]))[0][0, -len(pred) :], -1)
            total_nats -= float(lp[torch.arange(len(pred)), torch.tensor(pred)].sum())
        total_bytes += len(text.encode())
    assert scores["tokenmill_pycloze_ppl"]["bits_per_byte"] == pytest.approx(
        total_nats / total_bytes / np.log(2), rel=1e-4
    )
