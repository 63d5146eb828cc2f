"""Configuration of the fine-tune stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The documented instruction template: the model sees the prompt between these markers, and is
# trained to continue with the response followed by the end-of-text token.
DEFAULT_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


class LoRAConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, description="The update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["c_attn", "c_proj", "c_fc", "c_gate", "proj"],
        description="Linear layers to adapt, by last name component (GPT: c_attn c_proj c_fc c_gate; LSTM: proj)",
    )


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Literal["classify", "instruct"] = Field(
        "classify", description="classify: a label per text; instruct: LM loss on response tokens"
    )
    method: Literal["full", "lora"] = Field("full", description="Train every weight, or low-rank adapters")
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    pooling: Literal["last", "mean"] = Field(
        "mean",
        description="Classifier input: the mean of the text's hidden states, or the state of its last token "
        "(an appended end-of-text). Mean by default: a small pretrained LM's end-of-text state holds what it "
        "expects next more than what the text said (benchmarks/finetune_transfer.py measures both)",
    )
    lm_score: bool = Field(
        False,
        description="Classify: the head also reads how surprised the language model is by the text (its mean "
        "next-token log-loss, standardised over the training texts; read, not trained through): what a pretrained "
        "LM knows of which word sequences are natural, which a pooled hidden state does not expose linearly",
    )
    probe_l2: float | None = Field(
        None,
        ge=0,
        description="Classify: before fine-tuning, fit the head alone on the frozen features (a logistic "
        "regression with this L2 penalty, LP-FT); None: the head starts random",
    )
    head_dropout: float = Field(0.1, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "balanced",
        description="Loss weight per class: balanced = n / (k * count), or one number per label id",
    )
    max_len: int = Field(96, ge=2, description="Tokens per example (cut to the model's block size)")
    template: str = Field(
        DEFAULT_TEMPLATE, description="Instruct: how a prompt is shown; must contain {prompt}"
    )
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0, description="Peak learning rate (warmup, then cosine to lr / 10)")
    head_lr: float | None = Field(
        None, description="Learning rate of the new classification head; default lr * 10"
    )
    weight_decay: float = 0.01
    warmup_steps: int = 20
    max_steps: int = Field(200, ge=1, description="Optimizer steps: the training budget")
    adapt_steps: int = Field(
        0,
        ge=0,
        description="Classify: causal-LM steps on the train split's texts (labels unused) before the "
        "classifier trains: domain-adaptive pretraining, as ULMFiT. The scratch baseline gets the same steps",
    )
    adapt_lr: float = Field(1e-3, gt=0, description="Peak learning rate of the domain-adaptive LM steps")
    eval_interval: int = Field(20, ge=1, description="Steps between validation evaluations")
    select_on: Literal["accuracy", "loss"] = Field(
        "accuracy",
        description="Classify: keep the weights with the best validation accuracy (ties: lower loss), or the "
        "lowest validation loss. Accuracy by default: on a few hundred validation texts the loss of a "
        "pretrained model bottoms out early while its accuracy still climbs. Instruct always uses loss",
    )
    patience: int = Field(
        4, ge=0, description="Stop after this many evaluations without improvement; 0 = never"
    )
    grad_clip: float = 1.0
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, description="torch CPU threads; default: torch's choice")
    baseline: bool = Field(
        True,
        description="Also train the same architecture from scratch on the same data with the same budget",
    )

    export_hf: bool = Field(
        False,
        description="Also write the fine-tuned model as a Hugging Face transformers directory, hf/ in "
        "the version directory: …ForSequenceClassification (needs pooling: last) or …ForCausalLM",
    )

    @model_validator(mode="after")
    def _template(self) -> FinetuneConfig:
        if "{prompt}" not in self.template:
            raise ValueError("template must contain {prompt}")
        if self.export_hf and self.task == "classify" and self.pooling != "last":
            raise ValueError(
                "export_hf needs pooling: last: transformers' …ForSequenceClassification scores the "
                "last token, it has no mean pooling"
            )
        if self.export_hf and self.task == "classify" and self.lm_score:
            raise ValueError(
                "export_hf needs lm_score: false: transformers' classification heads read hidden states only"
            )
        return self
