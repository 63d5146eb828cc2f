"""The GPT and LSTM models, the checkpoint format, the optimizer groups and the LR schedule."""

import itertools
import json
import math

import pytest
import torch

from pipeline.models import GPT, build_model, model_config_dict
from pipeline.models.checkpoint import (
    MODEL_FILE,
    is_checkpoint,
    load_model,
    load_train_state,
    load_weights,
    read_model_config,
    save_checkpoint,
)
from pipeline.pretrain.optim import lr_at, make_optimizer

TINY = {"vocab_size": 97, "block_size": 24, "n_layer": 2, "n_head": 2, "n_embd": 32}
MODELS = [
    ("gpt", {**TINY, "style": "gpt2"}),
    ("gpt", {**TINY, "style": "llama"}),
    ("lstm", {"vocab_size": 97, "block_size": 24, "n_layer": 2, "n_embd": 32, "n_hidden": 48}),
]
IDS = ["gpt2", "llama", "lstm"]


@pytest.mark.parametrize("arch,cfg", MODELS, ids=IDS)
def test_forward_shapes_and_initial_loss_near_uniform(arch, cfg):
    torch.manual_seed(0)
    model = build_model(arch, **cfg)
    x = torch.randint(0, 97, (3, 24))
    y = torch.randint(0, 97, (3, 24))
    logits, loss = model(x, y)
    assert logits.shape == (3, 24, 97)
    assert model.hidden_states(x).shape == (3, 24, 32)
    # small initial weights: every token about equally likely, loss about ln(vocab)
    assert abs(loss.item() - math.log(97)) < 0.3
    assert model(x)[1] is None


@pytest.mark.parametrize("arch,cfg", MODELS, ids=IDS)
def test_causal_the_future_does_not_change_the_past(arch, cfg):
    torch.manual_seed(0)
    model = build_model(arch, **cfg).eval()
    x = torch.randint(0, 97, (1, 24))
    x2 = x.clone()
    x2[0, 15:] = (x2[0, 15:] + 1) % 97
    a, b = model(x)[0], model(x2)[0]
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


@pytest.mark.parametrize("arch,cfg", MODELS, ids=IDS)
def test_embedding_and_head_share_one_weight(arch, cfg):
    model = build_model(arch, **cfg)
    emb = model.transformer.wte if arch == "gpt" else model.wte
    assert emb.weight is model.lm_head.weight


def test_styles_differ_where_they_should():
    gpt2 = build_model("gpt", **TINY, style="gpt2")
    llama = build_model("gpt", **TINY, style="llama")
    names2 = {n for n, _ in gpt2.named_parameters()}
    names_l = {n for n, _ in llama.named_parameters()}
    assert "transformer.wpe.weight" in names2 and "transformer.wpe.weight" not in names_l  # RoPE, no table
    assert "transformer.h.0.mlp.c_gate.weight" in names_l  # SwiGLU
    assert isinstance(llama.transformer.ln_f, torch.nn.RMSNorm)
    assert isinstance(gpt2.transformer.ln_f, torch.nn.LayerNorm)
    # Without positions, one attention layer over {a, b, c} ignores their order; RoPE sees it.
    llama = build_model("gpt", **{**TINY, "n_layer": 1}, style="llama").eval()
    h1 = llama.hidden_states(torch.tensor([[7, 8, 9]]))
    h2 = llama.hidden_states(torch.tensor([[8, 7, 9]]))
    assert not torch.allclose(h1[0, 2], h2[0, 2], atol=1e-4)
    llama.rope_cos.fill_(1.0), llama.rope_sin.fill_(0.0)  # rotation by zero: RoPE off
    h1, h2 = llama.hidden_states(torch.tensor([[7, 8, 9]])), llama.hidden_states(torch.tensor([[8, 7, 9]]))
    torch.testing.assert_close(h1[0, 2], h2[0, 2])


def test_too_long_input_is_refused():
    model = build_model("gpt", **TINY)
    with pytest.raises(ValueError, match="block size"):
        model(torch.zeros(1, 25, dtype=torch.long))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        build_model("gpt", **{**TINY, "n_head": 3})
    with pytest.raises(ValueError, match="unknown model arch"):
        build_model("rnn")
    with pytest.raises(ValueError, match="no fields"):
        build_model("lstm", n_head=4)


@pytest.mark.parametrize("arch,cfg", MODELS, ids=IDS)
def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path, arch, cfg):
    torch.manual_seed(1)
    model = build_model(arch, **cfg).eval()
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    out = save_checkpoint(tmp_path / "ckpt", model, tokenizer_dir=tok)
    assert is_checkpoint(out) and (out / "tokenizer" / "tokenizer.json").is_file()
    assert read_model_config(out) == model_config_dict(model)
    assert json.loads((out / "model_config.json").read_text())["arch"] == arch
    loaded, config = load_model(out)
    assert config == model.config
    x = torch.randint(0, 97, (2, 24))
    torch.testing.assert_close(loaded(x)[0], model(x)[0], rtol=0, atol=0)
    # tied weights are stored once
    from safetensors import safe_open

    with safe_open(str(out / MODEL_FILE), "pt") as f:
        keys = set(f.keys())
    assert ("lm_head.weight" in keys) != ("transformer.wte.weight" in keys or "wte.weight" in keys)


def test_checkpoint_rewrite_is_atomic_replacement(tmp_path):
    a = build_model("gpt", **TINY)
    b = build_model("gpt", **{**TINY, "n_layer": 1})
    save_checkpoint(tmp_path / "c", a)
    save_checkpoint(tmp_path / "c", b)
    assert read_model_config(tmp_path / "c")["n_layer"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary leftovers


def test_train_state_round_trip_resumes_the_optimizer_exactly(tmp_path):
    def step(model, opt, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 97, (2, 24), generator=g)
        _, loss = model(x, x.roll(-1, 1))
        loss.backward()
        opt.step()
        opt.zero_grad()

    torch.manual_seed(0)
    model = build_model("gpt", **TINY)
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), "cpu")
    step(model, opt, 0)
    save_checkpoint(
        tmp_path / "c", model, optimizer=opt, state={"step": 1}, tensors={"rng": torch.get_rng_state()}
    )
    step(model, opt, 1)

    torch.manual_seed(123)  # a different init, to be overwritten
    resumed = build_model("gpt", **TINY)
    opt2 = make_optimizer(resumed, 1e-3, 0.1, (0.9, 0.99), "cpu")
    load_weights(resumed, tmp_path / "c")
    state, tensors = load_train_state(tmp_path / "c", opt2)
    assert state["step"] == 1 and tensors["rng"].dtype == torch.uint8 and set(tensors) == {"rng"}
    step(resumed, opt2, 1)
    for (n, p), (_, q) in zip(model.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_weight_decay_applies_to_matrices_only_and_covers_every_parameter():
    model = build_model("gpt", **TINY, bias=True)
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    in_groups = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in model.parameters())  # tied weight once


def test_lr_schedule_warms_up_peaks_and_decays_to_min():
    lrs = [lr_at(s, 1e-3, 1e-4, 10, 100) for s in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] < 1e-3
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:101]))
    assert lrs[55] == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert lrs[100] == lrs[119] == 1e-4


def test_flops_per_token_counts_parameters_and_attention():
    model = build_model("gpt", **TINY)
    assert isinstance(model, GPT)
    n = model.num_params()
    assert model.flops_per_token() == 6 * n + 12 * 2 * 32 * 24
