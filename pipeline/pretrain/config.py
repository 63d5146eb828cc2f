"""Configuration of the pretrain stage: which model, how to optimise it, for how long, where.

The defaults train a small GPT on 2 CPU cores in a few minutes on the default corpus and beat
the unigram baseline by a wide margin; scale the shape, the batch and ``max_steps`` for more.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GPTShape(BaseModel):
    """The GPT's shape; the vocabulary size and context length come from the token dataset."""

    model_config = ConfigDict(extra="forbid")

    style: Literal["gpt2", "llama"] = Field(
        "gpt2", description="gpt2: learned positions, LayerNorm, GELU; llama: RoPE, RMSNorm, SwiGLU"
    )
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=8)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bias: bool = Field(False, description="Biases in Linear and LayerNorm layers")


class LSTMShape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_layer: int = Field(2, ge=1)
    n_embd: int = Field(128, ge=8, description="Embedding width (tied with the LM head)")
    n_hidden: int = Field(512, ge=8, description="LSTM state width")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # -- model ----------------------------------------------------------------------------------
    arch: Literal["gpt", "lstm"] = Field("gpt", description="Which model to train")
    gpt: GPTShape = Field(default_factory=GPTShape)
    lstm: LSTMShape = Field(default_factory=LSTMShape)
    init_from: str | None = Field(
        None,
        description="Continue training these weights: a local Hugging Face directory of a GPT-2 or "
        "Llama causal LM, or a tokenmill checkpoint. The model's shape comes from it (arch, gpt and "
        "lstm are ignored); its tokenizer must be the tokenize stage's (tokenizer: pretrained, "
        "tokenizer_path: the same directory)",
    )
    export_hf: bool = Field(
        False,
        description="Also write the final model as a Hugging Face transformers directory, hf/ in the "
        "version directory (GPT models only)",
    )
    context_len: int | None = Field(
        None,
        ge=1,
        description="Tokens of context the model trains on; below the token rows' seq_len, each row "
        "yields one window at a seeded random offset per epoch (nanoGPT's any-offset sampling), and "
        "validation scores every token in consecutive windows; default: seq_len",
    )
    # -- optimisation ---------------------------------------------------------------------------
    batch_size: int = Field(16, ge=1, description="Sequences per micro-batch (per process)")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step")
    learning_rate: float = Field(2e-3, gt=0, description="Peak learning rate, after warmup")
    min_lr: float = Field(2e-4, ge=0, description="Learning rate at the end of the cosine decay")
    warmup_steps: int = Field(30, ge=0)
    lr_decay_steps: int | None = Field(None, description="Steps of cosine decay; default max_steps")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay of matrices (not of norms, biases)")
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = Field(1.0, ge=0, description="Clip the global gradient norm; 0 disables")
    # -- budget and reporting -------------------------------------------------------------------
    max_steps: int = Field(
        400,
        ge=0,
        description="Optimizer steps to train for (the budget); 0 with init_from publishes the imported "
        "model as it is (to fine-tune or evaluate it)",
    )
    log_interval: int = Field(10, ge=1, description="Steps between train-loss rows in the metrics")
    eval_interval: int = Field(100, ge=1, description="Steps between validation-loss evaluations")
    eval_batches: int = Field(20, ge=1, description="Validation batches per evaluation (fixed, first ones)")
    checkpoint_interval: int = Field(100, ge=1, description="Steps between resumable checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="Resumable checkpoints kept in the work dir")
    # -- reproducibility and hardware -----------------------------------------------------------
    seed: int = 1337
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available")
    deterministic: bool = Field(
        True, description="Deterministic kernels (bit-identical reruns on CPU); turn off on GPU for speed"
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bf16 autocast on GPU, fp32 on CPU"
    )
    compile: bool = Field(False, description="torch.compile the model (GPU only; ignored on CPU)")
    nproc: int = Field(
        1,
        ge=1,
        description="Processes training data-parallel under torchrun: one per GPU, or CPU "
        "processes; batch_size is per process, so the global batch is batch_size * nproc",
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="Data parallelism under torchrun. ddp: a whole copy of the model, gradients and "
        "optimizer state per process; fsdp: FSDP2 (fully_shard per transformer block) shards them "
        "across the processes, checkpoints are sharded (torch.distributed.checkpoint) and the final "
        "one also whole. fsdp runs under torchrun even with nproc 1; gpt only",
    )
    activation_checkpointing: bool = Field(
        False,
        description="Recompute each transformer block's activations in backward instead of keeping "
        "them: far less activation memory for about a third more compute; same result; gpt only",
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend when nproc > 1; auto: nccl on GPU, gloo on CPU"
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for torch (default: torch's choice); 1 is fastest on a busy machine",
    )
    peak_flops: float | None = Field(
        None, description="Device peak FLOP/s for MFU; default from the GPU's name"
    )

    @model_validator(mode="after")
    def _check(self) -> PretrainConfig:
        if self.arch == "gpt" and self.gpt.n_embd % self.gpt.n_head:
            raise ValueError(
                f"gpt.n_embd {self.gpt.n_embd} must be a multiple of gpt.n_head {self.gpt.n_head}"
            )
        if self.arch != "gpt" and (self.strategy == "fsdp" or self.activation_checkpointing):
            raise ValueError(
                "strategy fsdp and activation_checkpointing work on transformer blocks: arch gpt only"
            )
        if self.max_steps == 0 and self.init_from is None:
            raise ValueError("max_steps 0 only imports a model: it needs init_from")
        if self.export_hf and self.arch == "lstm" and self.init_from is None:
            raise ValueError("export_hf: the LSTM has no transformers equivalent (use arch: gpt)")
        if self.min_lr > self.learning_rate:
            raise ValueError("min_lr must not exceed learning_rate")
        return self

    def model_shape(self) -> dict:
        """The chosen model's shape fields (vocab_size and block_size are added from the data)."""
        return (self.gpt if self.arch == "gpt" else self.lstm).model_dump()
