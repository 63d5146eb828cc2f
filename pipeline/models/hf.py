"""Hugging Face transformers model directories, out of tokenmill and into it.

Out: a GPT checkpoint becomes a directory that transformers opens with its own classes, no
remote code: ``GPT2LMHeadModel`` (style gpt2) or ``LlamaForCausalLM`` (style llama), and a
fine-tuned classifier ``GPT2ForSequenceClassification`` / ``LlamaForSequenceClassification``.
The directory holds ``config.json``, ``generation_config.json``, ``model.safetensors`` and the
tokenizer as ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``.
In: a directory of either causal-LM architecture becomes a tokenmill GPT (any other one is an
error that lists these two).

Where the layouts differ:
- GPT-2 stores its projections as ``Conv1D`` weights, (in, out): nn.Linear's transposed. Its
  Linear and LayerNorm layers always have biases; a tokenmill model without them exports zeros,
  and a model whose biases are all zero imports as ``bias: false``.
- RoPE: tokenmill rotates interleaved channel pairs (2i, 2i+1) of each head; transformers'
  Llama rotates (i, i + head_dim/2) (``rotate_half``). Both use frequency i for pair i, so the
  export reorders the rows of the query and key projections within each head (channel 2i to i,
  2i+1 to i + head_dim/2) and the import undoes it. q and k move alike, so every attention score
  is the same.
- The SwiGLU MLP: ``c_gate`` is Llama's ``gate_proj``, ``c_fc`` its ``up_proj``, ``c_proj`` its
  ``down_proj``.
- A classifier's score layer is transformers' bias-free ``score`` applied to the last
  non-padding token; tokenmill classifiers with ``pooling: last`` have the same head and append
  end-of-text to every text, which the exported tokenizer's post-processor does too. Right
  padding uses an added ``<|pad|>`` token (one zero embedding row), so the appended end-of-text
  is never taken for padding.
Nothing here imports transformers: the files are written and read with safetensors and json,
so export works without it, and a test loads the result with transformers itself.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConfigError
from ..hashing import sha256_bytes, sha256_file
from .checkpoint import commit
from .gpt import GPT, GPTConfig

if TYPE_CHECKING:
    from ..finetune.heads import SequenceClassifier

CONFIG_JSON = "config.json"
GENERATION_JSON = "generation_config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
PAD_TOKEN = "<|pad|>"

# style -> the transformers classes an export writes
CAUSAL_LM = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
SEQUENCE_CLASSIFIER = {"gpt2": "GPT2ForSequenceClassification", "llama": "LlamaForSequenceClassification"}
MODEL_TYPE = {"gpt2": "gpt2", "llama": "llama"}
# what an import accepts: a causal LM of either architecture
SUPPORTED_IMPORTS = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama"}
GELU_NAMES = {"gelu": "exact", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


# -- weights: tokenmill names <-> transformers names ---------------------------------------------------
def _rope_order(head_dim: int) -> torch.Tensor:
    """Channel order taking interleaved RoPE pairs to rotate_half's halves: evens, then odds."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def _per_head(w: torch.Tensor, heads: int, order: torch.Tensor) -> torch.Tensor:
    """Reorder the output rows of a projection (weight (out, in) or bias (out,)) within each head."""
    shape = w.shape
    return w.reshape(heads, -1, *shape[1:])[:, order].reshape(shape)


def to_hf_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' names and layouts (the causal-LM classes)."""
    c = model.config
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    if c.style == "gpt2":
        if c.kv_heads != c.n_head:
            raise ConfigError("GPT-2 has no grouped-query attention: n_kv_head must equal n_head")

        def linear(src: str, dst: str) -> None:
            w = sd[f"{src}.weight"]
            out[f"{dst}.weight"] = w.t().contiguous()  # Conv1D: (in, out)
            out[f"{dst}.bias"] = sd.get(f"{src}.bias", torch.zeros(w.shape[0]))

        def norm(src: str, dst: str) -> None:
            out[f"{dst}.weight"] = sd[f"{src}.weight"]
            out[f"{dst}.bias"] = sd.get(f"{src}.bias", torch.zeros(c.n_embd))

        out["transformer.wte.weight"] = sd["transformer.wte.weight"]
        out["transformer.wpe.weight"] = sd["transformer.wpe.weight"]
        for i in range(c.n_layer):
            s, d = f"transformer.h.{i}", f"transformer.h.{i}"
            norm(f"{s}.ln_1", f"{d}.ln_1")
            linear(f"{s}.attn.c_attn", f"{d}.attn.c_attn")
            linear(f"{s}.attn.c_proj", f"{d}.attn.c_proj")
            norm(f"{s}.ln_2", f"{d}.ln_2")
            linear(f"{s}.mlp.c_fc", f"{d}.mlp.c_fc")
            linear(f"{s}.mlp.c_proj", f"{d}.mlp.c_proj")
        norm("transformer.ln_f", "transformer.ln_f")
    else:
        hd, kv = c.n_embd // c.n_head, c.kv_heads * (c.n_embd // c.n_head)
        order = _rope_order(hd)
        out["model.embed_tokens.weight"] = sd["transformer.wte.weight"]
        for i in range(c.n_layer):
            s, d = f"transformer.h.{i}", f"model.layers.{i}"
            for kind in ("weight", "bias") if c.bias else ("weight",):
                q, k, v = sd[f"{s}.attn.c_attn.{kind}"].split([c.n_embd, kv, kv])
                out[f"{d}.self_attn.q_proj.{kind}"] = _per_head(q, c.n_head, order)
                out[f"{d}.self_attn.k_proj.{kind}"] = _per_head(k, c.kv_heads, order)
                out[f"{d}.self_attn.v_proj.{kind}"] = v.clone()
                out[f"{d}.self_attn.o_proj.{kind}"] = sd[f"{s}.attn.c_proj.{kind}"]
                out[f"{d}.mlp.gate_proj.{kind}"] = sd[f"{s}.mlp.c_gate.{kind}"]
                out[f"{d}.mlp.up_proj.{kind}"] = sd[f"{s}.mlp.c_fc.{kind}"]
                out[f"{d}.mlp.down_proj.{kind}"] = sd[f"{s}.mlp.c_proj.{kind}"]
            out[f"{d}.input_layernorm.weight"] = sd[f"{s}.ln_1.weight"]
            out[f"{d}.post_attention_layernorm.weight"] = sd[f"{s}.ln_2.weight"]
        out["model.norm.weight"] = sd["transformer.ln_f.weight"]
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def from_hf_tensors(
    tensors: dict[str, torch.Tensor], config: GPTConfig, where: Path
) -> dict[str, torch.Tensor]:
    """tokenmill state-dict entries from transformers' causal-LM tensors (the inverse of the export)."""
    c = config

    def get(name: str) -> torch.Tensor:
        if name not in tensors:
            raise ConfigError(f"{where}: tensor {name} is missing")
        return tensors[name].float()

    sd: dict[str, torch.Tensor] = {}
    if c.style == "gpt2":
        sd["transformer.wte.weight"] = get("transformer.wte.weight")
        sd["transformer.wpe.weight"] = get("transformer.wpe.weight")
        layers = [(f"transformer.h.{i}", f"transformer.h.{i}") for i in range(c.n_layer)]
        for s, d in layers:
            for part in ("ln_1", "ln_2"):
                sd[f"{d}.{part}.weight"] = get(f"{s}.{part}.weight")
                if c.bias:
                    sd[f"{d}.{part}.bias"] = get(f"{s}.{part}.bias")
            for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                sd[f"{d}.{part}.weight"] = get(f"{s}.{part}.weight").t().contiguous()
                if c.bias:
                    sd[f"{d}.{part}.bias"] = get(f"{s}.{part}.bias")
        sd["transformer.ln_f.weight"] = get("transformer.ln_f.weight")
        if c.bias:
            sd["transformer.ln_f.bias"] = get("transformer.ln_f.bias")
        embed = "transformer.wte.weight"
    else:
        back = torch.argsort(_rope_order(c.n_embd // c.n_head))
        sd["transformer.wte.weight"] = get("model.embed_tokens.weight")
        for i in range(c.n_layer):
            s, d = f"model.layers.{i}", f"transformer.h.{i}"
            for kind in ("weight", "bias") if c.bias else ("weight",):
                q = _per_head(get(f"{s}.self_attn.q_proj.{kind}"), c.n_head, back)
                k = _per_head(get(f"{s}.self_attn.k_proj.{kind}"), c.kv_heads, back)
                sd[f"{d}.attn.c_attn.{kind}"] = torch.cat([q, k, get(f"{s}.self_attn.v_proj.{kind}")])
                sd[f"{d}.attn.c_proj.{kind}"] = get(f"{s}.self_attn.o_proj.{kind}")
                sd[f"{d}.mlp.c_gate.{kind}"] = get(f"{s}.mlp.gate_proj.{kind}")
                sd[f"{d}.mlp.c_fc.{kind}"] = get(f"{s}.mlp.up_proj.{kind}")
                sd[f"{d}.mlp.c_proj.{kind}"] = get(f"{s}.mlp.down_proj.{kind}")
            sd[f"{d}.ln_1.weight"] = get(f"{s}.input_layernorm.weight")
            sd[f"{d}.ln_2.weight"] = get(f"{s}.post_attention_layernorm.weight")
        sd["transformer.ln_f.weight"] = get("model.norm.weight")
        embed = "model.embed_tokens.weight"
    sd["lm_head.weight"] = get(embed) if c.tie_embeddings else get("lm_head.weight")
    return sd


# -- config.json ---------------------------------------------------------------------------------------
def hf_config(c: GPTConfig, architecture: str, eot_id: int, vocab_size: int | None = None) -> dict[str, Any]:
    """config.json for a GPT of this shape (``vocab_size`` overrides the model's, e.g. + a pad row)."""
    common = {
        "architectures": [architecture],
        "vocab_size": vocab_size or c.vocab_size,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "tie_word_embeddings": c.tie_embeddings,
        "initializer_range": 0.02,
        "use_cache": True,
        "dtype": "float32",
    }
    if c.style == "gpt2":
        return {
            **common,
            "model_type": "gpt2",
            "n_positions": c.block_size,
            "n_embd": c.n_embd,
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "n_inner": c.mlp_width,
            "activation_function": "gelu" if c.gelu == "exact" else "gelu_pytorch_tanh",
            "layer_norm_epsilon": c.norm_eps,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False,
        }
    return {
        **common,
        "model_type": "llama",
        "hidden_size": c.n_embd,
        "intermediate_size": c.mlp_width,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.n_embd // c.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": c.block_size,
        "rms_norm_eps": c.norm_eps,
        # transformers 5 reads rope_parameters, 4.x reads rope_theta: both, same value
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "attention_bias": c.bias,
        "mlp_bias": c.bias,
        "attention_dropout": 0.0,
        "pretraining_tp": 1,
    }


def gpt_config_from_hf(config: dict[str, Any], path: Path) -> GPTConfig:
    """The tokenmill GPT shape of a transformers GPT-2 / Llama causal-LM config.json."""
    c = _gpt_config_from_hf(config, path)
    # Fields equal to what tokenmill would pick anyway stay unset, so a round trip is the same config.
    if c.kv_heads == c.n_head:
        c.n_kv_head = None
    if c.mlp_hidden == replace(c, mlp_hidden=None).mlp_width:
        c.mlp_hidden = None
    return c


def _gpt_config_from_hf(config: dict[str, Any], path: Path) -> GPTConfig:
    arch = (config.get("architectures") or [None])[0]
    style = (
        SUPPORTED_IMPORTS.get(arch)
        if arch
        else {"gpt2": "gpt2", "llama": "llama"}.get(config.get("model_type", ""))
    )
    if style is None:
        raise ConfigError(
            f"{path}: architecture {arch or config.get('model_type')!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_IMPORTS)} (model_type gpt2 or llama)"
        )

    def unsupported(what: str) -> ConfigError:
        return ConfigError(f"{path}: {arch or style}: {what} is not supported")

    if style == "gpt2":
        act = config.get("activation_function", "gelu_new")
        if act not in GELU_NAMES:
            raise unsupported(f"activation_function {act!r}")
        if config.get("scale_attn_by_inverse_layer_idx") or config.get("scale_attn_weights") is False:
            raise unsupported("attention scaling other than 1/sqrt(head_dim)")
        if config.get("add_cross_attention"):
            raise unsupported("cross-attention")
        n_embd = config.get("n_embd", 768)
        return GPTConfig(
            vocab_size=config.get("vocab_size", 50257),
            block_size=config.get("n_positions", 1024),
            n_layer=config.get("n_layer", 12),
            n_head=config.get("n_head", 12),
            n_embd=n_embd,
            bias=True,  # refined by import_hf from the tensors
            style="gpt2",
            mlp_hidden=config.get("n_inner") or 4 * n_embd,
            norm_eps=config.get("layer_norm_epsilon", 1e-5),
            gelu=GELU_NAMES[act],  # type: ignore[arg-type]
            tie_embeddings=config.get("tie_word_embeddings", True),
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise unsupported(f"RoPE scaling {rope_type!r}")
    if config.get("hidden_act", "silu") != "silu":
        raise unsupported(f"hidden_act {config.get('hidden_act')!r}")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    if config.get("head_dim") not in (None, hidden // heads):
        raise unsupported(f"head_dim {config['head_dim']} other than hidden_size / num_attention_heads")
    if bool(config.get("attention_bias")) != bool(config.get("mlp_bias")):
        raise unsupported("attention_bias different from mlp_bias")
    return GPTConfig(
        vocab_size=config["vocab_size"],
        block_size=config.get("max_position_embeddings", 2048),
        n_layer=config["num_hidden_layers"],
        n_head=heads,
        n_embd=hidden,
        bias=bool(config.get("attention_bias")),
        style="llama",
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10_000.0))),
        n_kv_head=config.get("num_key_value_heads") or heads,
        mlp_hidden=config["intermediate_size"],
        norm_eps=config.get("rms_norm_eps", 1e-6),
        tie_embeddings=config.get("tie_word_embeddings", False),
    )


# -- reading a transformers directory ------------------------------------------------------------------
def is_hf_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG_JSON).is_file()


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def weight_files(directory: Path) -> list[Path]:
    """The safetensors file(s) of a transformers directory (one, or the shards of an index)."""
    if (directory / WEIGHTS).is_file():
        return [directory / WEIGHTS]
    if (directory / WEIGHTS_INDEX).is_file():
        index = read_json(directory / WEIGHTS_INDEX)
        names = sorted(set(index.get("weight_map", {}).values()))
        missing = [n for n in names if not (directory / n).is_file()]
        if missing or not names:
            raise ConfigError(
                f"{directory / WEIGHTS_INDEX}: shard {missing[0] if missing else '(none)'} is missing"
            )
        return [directory / n for n in names]
    pickles = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
    hint = f" ({', '.join(pickles)} are torch pickles, which tokenmill never loads)" if pickles else ""
    raise ConfigError(f"{directory / WEIGHTS}: missing{hint}")


def import_hf(directory: str | Path) -> GPT:
    """A tokenmill GPT holding the weights of a transformers GPT-2 or Llama causal-LM directory."""
    directory = Path(directory)
    config = gpt_config_from_hf(read_json(directory / CONFIG_JSON), directory / CONFIG_JSON)
    tensors: dict[str, torch.Tensor] = {}
    for f in weight_files(directory):
        try:
            tensors.update(load_file(str(f)))
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise ConfigError(f"{f}: not a readable safetensors file: {e}") from e
    # transformers checkpoints may prefix nothing, or carry a GPT2Model without the LM head wrapper
    if config.style == "gpt2" and "wte.weight" in tensors:
        tensors = {f"transformer.{k}": v for k, v in tensors.items()}
    if config.style == "gpt2" and config.bias:
        biases = [v for k, v in tensors.items() if k.startswith("transformer.") and k.endswith(".bias")]
        if biases and all(not v.any() for v in biases):
            config.bias = False  # an export of a bias-free model: keep it bias-free
    model = GPT(config)
    sd = from_hf_tensors(tensors, config, directory / WEIGHTS)
    expected = model.state_dict()
    for name, t in sd.items():
        if name in expected and tuple(t.shape) != tuple(expected[name].shape):
            raise ConfigError(
                f"{directory / WEIGHTS}: {name} has shape {list(t.shape)}, "
                f"{CONFIG_JSON} implies {list(expected[name].shape)}"
            )
    model.load_state_dict(sd, strict=True)
    return model.eval()


# -- writing a transformers directory -------------------------------------------------------------------
def tokenizer_files(tok, model_max_length: int, pad_token: str | None = None) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for a tokenizer.json (PreTrainedTokenizerFast)."""
    special = {"bos_token": tok.eot_token, "eos_token": tok.eot_token}
    if tok.tokenizer.token_to_id("<unk>") is not None:
        special["unk_token"] = "<unk>"
    if pad_token:
        special["pad_token"] = pad_token
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        **special,
    }
    return {TOKENIZER_CONFIG: config, SPECIAL_TOKENS_MAP: special}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_hf_dir(
    out_dir: str | Path,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    tokenizer_json: str,
    tok_files: dict[str, dict[str, Any]],
    generation: dict[str, Any] | None,
) -> Path:
    """Write a transformers model directory atomically (replacing one already there)."""
    final = Path(out_dir)
    if final.exists() and not final.is_dir():
        raise ConfigError(f"{final}: exists and is not a directory")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        _write_json(tmp / CONFIG_JSON, config)
        if generation is not None:
            _write_json(tmp / GENERATION_JSON, generation)
        (tmp / TOKENIZER_JSON).write_text(tokenizer_json)
        for name, obj in tok_files.items():
            _write_json(tmp / name, obj)
        commit(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def export_causal_lm(model: nn.Module, tok, out_dir: str | Path) -> dict[str, Any]:
    """Write a GPT language model and its tokenizer as GPT2LMHeadModel / LlamaForCausalLM."""
    if not isinstance(model, GPT):
        raise ConfigError(
            f"{type(model).__name__} has no transformers equivalent: only GPT models (style gpt2 "
            "or llama) export to Hugging Face; the LSTM baseline stays a tokenmill checkpoint"
        )
    c = model.config
    if tok.vocab_size > c.vocab_size:
        raise ConfigError(f"the tokenizer has {tok.vocab_size} ids but the model only {c.vocab_size}")
    architecture = CAUSAL_LM[c.style]
    config = hf_config(c, architecture, tok.eot_id)
    generation = {
        "bos_token_id": tok.eot_id,
        "eos_token_id": tok.eot_id,
        "pad_token_id": tok.eot_id,
        "max_length": c.block_size,  # GPT-2 has no positions beyond its block
        "do_sample": True,  # as `tokenmill generate`: temperature 0.8, top-k 200
        "temperature": 0.8,
        "top_k": 200,
    }
    write_hf_dir(
        out_dir, config, to_hf_tensors(model), tok.to_json(), tokenizer_files(tok, c.block_size), generation
    )
    return {"architecture": architecture, "vocab_size": c.vocab_size, "style": c.style}


def export_classifier(
    model: SequenceClassifier, tok, labels: list[str], max_len: int, out_dir: str | Path
) -> dict[str, Any]:
    """Write a last-token classifier as GPT2/LlamaForSequenceClassification with id2label/label2id."""
    from tokenizers import processors

    backbone, head = model.backbone, model.head
    if not isinstance(backbone, GPT):
        raise ConfigError(
            f"a classifier on a {type(backbone).__name__} has no transformers equivalent: only GPT "
            "backbones export to Hugging Face"
        )
    if model.pooling != "last":
        raise ConfigError(
            f"this classifier pools the {model.pooling} of the hidden states; transformers' "
            "…ForSequenceClassification scores the last token only. Fine-tune with "
            "finetune.pooling: last to export it"
        )
    if head.bias is not None:
        raise ConfigError(
            "this classifier's head has a bias (trained before tokenmill matched transformers' "
            "bias-free score layer); fine-tune it again to export it"
        )
    c = backbone.config
    # The tokenizer appends end-of-text, as tokenmill's classifier input does, and pads with a
    # token of its own so that the appended end-of-text stays the last non-padding token.
    hf_tok = type(tok.tokenizer).from_str(tok.tokenizer.to_str())
    hf_tok.post_processor = processors.TemplateProcessing(
        single=f"$A {tok.eot_token}", special_tokens=[(tok.eot_token, tok.eot_id)]
    )
    pad_id = hf_tok.token_to_id(PAD_TOKEN)
    if pad_id is None:
        hf_tok.add_special_tokens([PAD_TOKEN])
        pad_id = hf_tok.token_to_id(PAD_TOKEN)
    if pad_id == tok.eot_id:
        raise ConfigError(f"the end-of-text token {tok.eot_token!r} cannot also be the padding token")
    vocab = max(c.vocab_size, pad_id + 1)
    tensors = to_hf_tensors(backbone)
    embed = "transformer.wte.weight" if c.style == "gpt2" else "model.embed_tokens.weight"
    if vocab > c.vocab_size:  # the pad token's row: never read by a real token
        tensors[embed] = torch.cat([tensors[embed], torch.zeros(vocab - c.vocab_size, c.n_embd)])
    tensors.pop("lm_head.weight", None)  # a classifier has no LM head
    prefix = "transformer." if c.style == "gpt2" else "model."
    tensors = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    tensors["score.weight"] = head.weight.detach().float().cpu().contiguous()
    architecture = SEQUENCE_CLASSIFIER[c.style]
    config = hf_config(c, architecture, tok.eot_id, vocab_size=vocab)
    config.update(
        {
            "pad_token_id": pad_id,
            "num_labels": len(labels),
            "id2label": {str(i): lab for i, lab in enumerate(labels)},
            "label2id": {lab: i for i, lab in enumerate(labels)},
            "problem_type": "single_label_classification",
            "tie_word_embeddings": False,
        }
    )
    files = tokenizer_files(tok, max_len, pad_token=PAD_TOKEN)
    files[TOKENIZER_CONFIG]["padding_side"] = "right"
    write_hf_dir(out_dir, config, tensors, hf_tok.to_str(pretty=True), files, None)
    return {"architecture": architecture, "labels": labels, "style": c.style}


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Export a tokenmill checkpoint directory (pretrained, or fine-tuned) to a transformers directory."""
    from ..finetune.heads import META_FILE, SequenceClassifier, load_finetuned
    from ..tokenize.tokenizer import load_tokenizer
    from .checkpoint import MODEL_FILE, TOKENIZER_DIR, load_model, read_model_config

    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise ConfigError(f"{checkpoint}: no such checkpoint directory")
    read_model_config(checkpoint)  # names model_config.json when it is missing
    if not (checkpoint / MODEL_FILE).is_file():
        raise ConfigError(f"{checkpoint / MODEL_FILE}: missing; {checkpoint} is not a complete checkpoint")
    tok_dir = checkpoint / TOKENIZER_DIR
    if not (tok_dir / TOKENIZER_JSON).is_file():
        raise ConfigError(f"{tok_dir / TOKENIZER_JSON}: missing; an export needs the model's tokenizer")
    tok = load_tokenizer(tok_dir)
    if (checkpoint / META_FILE).is_file():
        model, meta = load_finetuned(checkpoint)
        if isinstance(model, SequenceClassifier):
            info = export_classifier(model, tok, meta["labels"], meta["max_len"], out_dir)
            return {**info, "source": str(checkpoint), "out": str(out_dir)}
    else:
        model, _ = load_model(checkpoint)
    info = export_causal_lm(model, tok, out_dir)
    return {**info, "source": str(checkpoint), "out": str(out_dir)}


# -- starting from existing weights -------------------------------------------------------------------
def load_init(path: str | Path) -> tuple[nn.Module, Path | None]:
    """The model in a tokenmill checkpoint or a transformers directory, and its tokenizer's location."""
    from .checkpoint import TOKENIZER_DIR, is_checkpoint, load_model

    path = Path(path).expanduser()
    if is_checkpoint(path):
        model, _ = load_model(path)
        tok = path / TOKENIZER_DIR
        return model, tok if (tok / TOKENIZER_JSON).is_file() else None
    if is_hf_dir(path):
        return import_hf(path), path if (path / TOKENIZER_JSON).is_file() else None
    raise ConfigError(
        f"{path}: neither a tokenmill checkpoint (model_config.json + model.safetensors) nor a "
        f"Hugging Face model directory ({CONFIG_JSON} + {WEIGHTS})"
    )


def init_digest(path: str | Path) -> str:
    """sha256 over the weight and config files of an init_from path: its bytes, not its name."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"pretrain.init_from {path}: no such directory")
    names = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".json"))
    if not names:
        raise ConfigError(f"pretrain.init_from {path}: no model files there (*.safetensors, *.json)")
    return sha256_bytes("\n".join(f"{n} {sha256_file(path / n)}" for n in names).encode())
