"""Fine-tune stage: LoRA, heads, instruction examples, and the stage on a small real task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.dataset import Dataset, Staging, manifest_header
from pipeline.finetune.config import FinetuneConfig, LoRAConfig
from pipeline.finetune.heads import SequenceClassifier, load_finetuned, pool, surprisal
from pipeline.finetune.instruct import IGNORE, encode_pair
from pipeline.finetune.lora import LoRALinear, apply_lora, merge_lora
from pipeline.finetune.stage import FinetuneStage
from pipeline.finetune.train import Examples, as_language_modelling
from pipeline.labeled.config import LabeledConfig, LabeledSourceConfig
from pipeline.labeled.stage import LabeledStage
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.stage import run_stage
from pipeline.tokenize.tokenizer import train_bpe

POSITIVE = ["good", "great", "lovely", "excellent", "wonderful", "nice", "superb", "fine"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "horrible", "dull", "broken", "ugly"]
THINGS = ["phone", "film", "meal", "book", "room", "song", "game", "car"]


def sentiment_rows(n: int, seed: int = 0) -> list[dict]:
    """A small, learnable two-class task: the adjective decides the label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        adj = rng.choice(POSITIVE if pos else NEGATIVE)
        rows.append(
            {"text": f"The {rng.choice(THINGS)} number {i} was {adj}.", "label": "pos" if pos else "neg"}
        )
    return rows


def make_pretrain(
    root: Path, texts: list[str], *, arch: str = "gpt", steps: int = 0, seed: int = 0
) -> Dataset:
    """A published `pretrain` dataset holding a tiny checkpoint (optionally LM-trained on texts)."""
    tok = train_bpe([texts], vocab_size=300, min_frequency=1)
    torch.manual_seed(seed)
    shape = {"n_layer": 2, "n_embd": 32}
    if arch == "gpt":
        shape["n_head"] = 2
    else:
        shape["n_hidden"] = 48
    model = build_model(arch, vocab_size=tok.vocab_size, block_size=32, **shape)
    ids = [torch.tensor(t[:32] + [tok.eot_id]) for t in tok.encode_batch(texts)]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = [ids[(step * 8 + j) % len(ids)] for j in range(8)]
        n = min(len(b) for b in batch)
        x = torch.stack([b[: n - 1] for b in batch])
        y = torch.stack([b[1:n] for b in batch])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    fp = f"fake{arch}{steps}{seed}".ljust(32, "0")
    staging = Staging(root, "pretrain", fp)
    tok_dir = tok.save(staging.dir / "tokdir")
    save_checkpoint(staging.dir / "checkpoint", model, tokenizer_dir=tok_dir)
    from pipeline.finetune.stage import METRICS_SCHEMA
    from pipeline.schema import REJECT_SCHEMA

    manifest = {**manifest_header("pretrain", fp), "config": {}, "inputs": [], "counts": {}, "stats": {}}
    return staging.publish(manifest, {"data": METRICS_SCHEMA, "rejects": REJECT_SCHEMA})


def make_labeled(root: Path, rows: list[dict], **cfg) -> Dataset:
    path = root / "labeled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = LabeledConfig(sources=[LabeledSourceConfig(path=str(path))], **cfg)
    return run_stage(LabeledStage(), config, root, {}).dataset


TINY = {
    "max_steps": 30,
    "eval_interval": 10,
    "batch_size": 16,
    "max_len": 24,
    "lr": 3e-3,
    "warmup_steps": 3,
    "adapt_steps": 0,
}


# -- LoRA ---------------------------------------------------------------------------------------
def test_lora_starts_at_base_trains_only_adapters_and_merges_exactly():
    torch.manual_seed(0)
    model = build_model("gpt", vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    x = torch.randint(0, 50, (2, 10))
    before, _ = model(x)
    names = apply_lora(model, ["c_attn", "c_fc"], rank=4, alpha=8)
    assert len(names) == 4 and all(isinstance(model.get_submodule(n), LoRALinear) for n in names)
    after, _ = model(x)
    torch.testing.assert_close(before, after)  # B starts at zero: the adapted model is the base model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    _, loss = model(x, x)
    loss.backward()
    opt.step()
    adapted, _ = model(x)
    assert not torch.allclose(adapted, before)
    assert merge_lora(model) == 4
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    merged, _ = model(x)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)


def test_lora_unknown_target_is_an_error():
    model = build_model("gpt", vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match="no Linear layer"):
        apply_lora(model, ["q_proj"], rank=2, alpha=2)


# -- heads and instruction examples -----------------------------------------------------------------
def test_last_token_pooling_ignores_right_padding():
    torch.manual_seed(0)
    backbone = build_model("gpt", vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
    clf = SequenceClassifier(backbone, 3, "last", dropout=0.0).eval()
    seq = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0, 0]])
    torch.testing.assert_close(clf(seq, torch.tensor([3])), clf(padded, torch.tensor([3])))
    h = torch.arange(12.0).view(1, 4, 3)
    torch.testing.assert_close(pool(h, torch.tensor([2]), "mean"), h[:, :2].mean(1))


def test_lm_score_is_the_language_models_own_loss_standardised():
    torch.manual_seed(0)
    backbone = build_model("gpt", vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
    clf = SequenceClassifier(backbone, 2, "mean", dropout=0.0, lm_score=True).eval()
    assert clf.head.in_features == 17
    x = torch.tensor([[5, 6, 7, 8, 9], [3, 4, 5, 0, 0]])
    n = torch.tensor([5, 3])
    _, loss = backbone(x[:1, :-1], x[:1, 1:])
    got = surprisal(backbone, backbone.hidden_states(x), x, n)
    torch.testing.assert_close(got[0], loss)  # the mean next-token loss; padding never counts
    _, loss = backbone(x[1:, :2], x[1:, 1:3])
    torch.testing.assert_close(got[1], loss)
    clf.prepare([(x, n, torch.tensor([0, 1]))], None, probe_l2=None)
    torch.testing.assert_close(clf.head.score_shift, got.mean())
    torch.testing.assert_close(clf.head.score_scale, got.std())
    torch.testing.assert_close(clf.features(x, n)[:, -1], (got - got.mean()) / got.std())


def test_probe_fits_the_head_on_frozen_features():
    torch.manual_seed(0)
    backbone = build_model("gpt", vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
    clf = SequenceClassifier(backbone, 2, "mean", dropout=0.1)
    x = torch.randint(1, 50, (40, 6))
    y = (x[:, 0] > 25).long()  # the first token decides: visible in the mean of the states
    n = torch.full((40,), 6)
    before = [p.detach().clone() for p in backbone.parameters()]
    clf.prepare([(x, n, y)], None, probe_l2=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, backbone.parameters()))  # the body is frozen
    assert clf.training  # back in the mode it was in
    clf.eval()
    assert (clf(x, n).argmax(-1) == y).float().mean() > 0.8  # a random head scores about 0.5


def test_encode_pair_masks_the_prompt_and_keeps_both_within_budget():
    x, y = encode_pair([1, 2, 3], [7, 8], eot_id=0, max_len=16)
    assert x.tolist() == [1, 2, 3, 7, 8]
    assert y.tolist() == [IGNORE, IGNORE, 7, 8, 0]  # loss on the response and its end-of-text only
    x, y = encode_pair(list(range(1, 30)), list(range(40, 70)), eot_id=0, max_len=10)
    assert len(x) == len(y) == 10
    assert x[0] == 24 and (y != IGNORE).sum() == 5  # the prompt keeps its end (24..29), the response half


# -- the stage --------------------------------------------------------------------------------------
@pytest.fixture
def task(tmp_path):
    rows = sentiment_rows(240)
    pre = make_pretrain(tmp_path, [r["text"] for r in rows], steps=30)
    lab = make_labeled(tmp_path, rows)
    return tmp_path, pre, lab


def test_finetune_trains_classifier_and_scratch_baseline(task):
    root, pre, lab = task
    cfg = FinetuneConfig(**TINY)
    res = run_stage(FinetuneStage(), cfg, root, {"pretrain": pre, "labeled": lab})
    assert res.counts["rows_in"] == res.counts["rows_out"] == 240 - 48  # train + validation rows
    models = res.stats["models"]
    assert set(models) == {"finetuned", "scratch"}
    assert models["finetuned"]["trainable_params"] == models["scratch"]["trainable_params"]
    curves = pq.read_table(res.data_path).to_pylist()
    assert {r["model"] for r in curves} == {"finetuned", "scratch"}
    assert (res.path / "curves.png").stat().st_size > 1000
    _model, meta = load_finetuned(res.path / "checkpoint")
    assert meta["labels"] == ["neg", "pos"] and meta["init"] == "pretrained"
    assert (res.path / "checkpoint" / "tokenizer" / "tokenizer.json").is_file()
    # the task is learnable: the fine-tuned classifier beats chance on validation
    best = min((r for r in curves if r["model"] == "finetuned"), key=lambda r: r["val_loss"])
    assert best["val_accuracy"] > 0.7
    again = run_stage(FinetuneStage(), cfg, root, {"pretrain": pre, "labeled": lab})
    assert again.cached


def test_as_language_modelling_shifts_each_text_by_one():
    ex = Examples([np.array([5, 6, 7, 0]), np.array([0])], labels=np.array([1, 0]))
    lm = as_language_modelling(ex)
    assert len(lm) == 1 and lm.labels is None  # a lone end-of-text has nothing to predict
    assert lm.ids[0].tolist() == [5, 6, 7] and lm.targets[0].tolist() == [6, 7, 0]


def test_domain_adaptation_language_models_train_texts_for_both_models(task):
    root, pre, lab = task
    cfg = FinetuneConfig(**{**TINY, "max_steps": 10, "adapt_steps": 20, "eval_interval": 10, "patience": 0})
    res = run_stage(FinetuneStage(), cfg, root, {"pretrain": pre, "labeled": lab})
    curves = pq.read_table(res.data_path).to_pylist()
    assert {r["model"] for r in curves} == {"finetuned-lm", "finetuned", "scratch-lm", "scratch"}
    for name in ("finetuned-lm", "scratch-lm"):
        lm = [r for r in curves if r["model"] == name]
        assert [r["step"] for r in lm] == [10, 20]
        assert lm[-1]["val_loss"] < lm[0]["val_loss"]  # it learns the validation texts' language
        assert all(r["val_accuracy"] is None for r in lm)
        assert res.stats["models"][name.split("-")[0]]["adapt_steps"] == 20
    # the pretrained model starts nearer the texts' language than the random one
    first = {r["model"]: r["val_loss"] for r in curves if r["step"] == 10}
    assert first["finetuned-lm"] < first["scratch-lm"]


def test_finetune_is_deterministic(task, tmp_path_factory):
    root, pre, lab = task
    cfg = FinetuneConfig(**{**TINY, "max_steps": 10, "baseline": False})
    a = run_stage(FinetuneStage(), cfg, root, {"pretrain": pre, "labeled": lab})
    other = tmp_path_factory.mktemp("again")
    import shutil

    shutil.copytree(root / "datasets" / "pretrain", other / "datasets" / "pretrain")
    shutil.copytree(root / "datasets" / "labeled", other / "datasets" / "labeled")
    b = run_stage(
        FinetuneStage(),
        cfg,
        other,
        {
            "pretrain": Dataset(other / pre.path.relative_to(root)),
            "labeled": Dataset(other / lab.path.relative_to(root)),
        },
    )
    for name in ("model.safetensors", "head.safetensors"):
        assert (a.path / "checkpoint" / name).read_bytes() == (b.path / "checkpoint" / name).read_bytes()
    assert [s["sha256"] for s in a.dataset.manifest["shards"]] == [
        s["sha256"] for s in b.dataset.manifest["shards"]
    ]


def test_lora_finetune_trains_few_parameters_and_saves_adapter(task):
    root, pre, lab = task
    cfg = FinetuneConfig(
        **{**TINY, "max_steps": 10}, method="lora", lora=LoRAConfig(rank=2, target_modules=["c_attn"])
    )
    res = run_stage(FinetuneStage(), cfg, root, {"pretrain": pre, "labeled": lab})
    ft, sc = res.stats["models"]["finetuned"], res.stats["models"]["scratch"]
    assert ft["trainable_params"] < sc["trainable_params"] / 5
    assert (res.path / "checkpoint" / "adapter.safetensors").is_file()
    model, meta = load_finetuned(res.path / "checkpoint")
    assert meta["lora_modules"] == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert not any(isinstance(m, LoRALinear) for m in model.modules())


def test_finetune_with_probe_and_lm_score_saves_a_classifier_that_loads_the_same(task):
    root, pre, lab = task
    cfg = FinetuneConfig(**{**TINY, "max_steps": 10}, lm_score=True, probe_l2=0.01, baseline=False)
    res = run_stage(FinetuneStage(), cfg, root, {"pretrain": pre, "labeled": lab})
    model, meta = load_finetuned(res.path / "checkpoint")
    assert meta["lm_score"] is True
    assert float(model.head.score_scale) != 1.0  # calibrated on the training texts, and saved
    curves = [r for r in pq.read_table(res.data_path).to_pylist() if r["model"] == "finetuned"]
    x = torch.tensor([[5, 6, 7, 8]])
    assert torch.isfinite(model(x, torch.tensor([4]))).all()
    assert max(r["val_accuracy"] for r in curves) > 0.7


def test_finetune_lstm_mean_pooling(tmp_path):
    rows = sentiment_rows(120)
    pre = make_pretrain(tmp_path, [r["text"] for r in rows], arch="lstm")
    lab = make_labeled(tmp_path, rows)
    cfg = FinetuneConfig(**{**TINY, "max_steps": 5, "eval_interval": 5}, pooling="mean", baseline=False)
    res = run_stage(FinetuneStage(), cfg, tmp_path, {"pretrain": pre, "labeled": lab})
    model, meta = load_finetuned(res.path / "checkpoint")
    assert meta["pooling"] == "mean" and type(model.backbone).__name__ == "LSTMLanguageModel"


def test_instruct_finetune_lowers_response_loss(tmp_path):
    rows = [
        {"prompt": f"Repeat the word {w}.", "response": f"{w} {w}"} for w in POSITIVE + NEGATIVE + THINGS
    ] * 4
    rows = [{**r, "prompt": r["prompt"] + f" ({i})"} for i, r in enumerate(rows)]
    pre = make_pretrain(tmp_path, [r["prompt"] + " " + r["response"] for r in rows])
    lab = make_labeled(tmp_path, rows, task="instruct")
    cfg = FinetuneConfig(**{**TINY, "max_len": 32, "max_steps": 20}, task="instruct", patience=0)
    res = run_stage(FinetuneStage(), cfg, tmp_path, {"pretrain": pre, "labeled": lab})
    curve = [r for r in pq.read_table(res.data_path).to_pylist() if r["model"] == "finetuned"]
    assert curve[-1]["val_loss"] < curve[0]["val_loss"]
    assert res.stats["task"] == "instruct"


def test_task_mismatch_is_a_config_error(task):
    from pipeline.errors import ConfigError

    root, pre, lab = task
    with pytest.raises(ConfigError, match="task"):
        run_stage(FinetuneStage(), FinetuneConfig(task="instruct"), root, {"pretrain": pre, "labeled": lab})
