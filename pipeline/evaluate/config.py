"""Configuration of the evaluate stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CurveConfig(BaseModel):
    """Label-efficiency curves (classification): pretrained vs from scratch at several label budgets."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Train and score the curve (classification tasks only)")
    budgets: list[int | Literal["all"]] = Field(
        default_factory=lambda: list[int | Literal["all"]]([8, 32, 128, "all"]),
        description="Labeled training examples per class; 'all' is the whole train split",
    )
    seeds: int = Field(
        5,
        ge=1,
        description="Seeds per budget, each drawing its own subset and initialisation. With 5, a budget "
        "where pretraining does not help passes the headline's rule about 3% of the time (3 seeds: 10%)",
    )
    epochs: float = Field(
        20.0, gt=0, description="Passes over a budget's examples, within [min_steps, max_steps]"
    )
    min_steps: int = Field(30, ge=1)
    max_steps: int = Field(80, ge=1, description="Caps the large budgets: most of the curve's CPU cost")
    batch_size: int | None = Field(16, ge=1, description="None: the fine-tune recipe's")
    max_len: int | None = Field(
        64, ge=2, description="Tokens per text (the first ones); None: the fine-tune recipe's"
    )
    tfidf_c: float = Field(10.0, gt=0, description="Inverse regularisation of the TF-IDF logistic regression")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch threads per curve unit; None: torch's default. Units in one process take turns "
        "(torch's RNG is process-global, and two at once would make the curve depend on timing); process "
        "engines (Dask, Ray) run them side by side: set 1 there",
    )

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[int | str]) -> list[int | str]:
        if not v:
            raise ValueError("give at least one budget")
        if any(isinstance(b, int) and b < 1 for b in v) or len(set(map(str, v))) != len(v):
            raise ValueError("budgets are distinct positive numbers of examples per class, or 'all'")
        return v


class LMEvalConfig(BaseModel):
    """lm-eval-harness on the exported pretrained model (and a fine-tuned instruct model)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(
        default_factory=list,
        description="lm-eval task names; empty: lm-eval is not run. Offline, shipped with tokenmill: "
        "tokenmill_pycloze (multiple choice), tokenmill_pycloze_ppl (perplexity)",
    )
    include_path: list[str] = Field(
        default_factory=list, description="More directories of lm-eval task YAML files"
    )
    num_fewshot: int | None = Field(None, ge=0, description="Few-shot examples; default: each task's own")
    limit: int | None = Field(None, ge=1, description="At most this many examples per task")
    batch_size: int = Field(8, ge=1)


class EvaluateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: Literal["test", "validation"] = Field(
        "test", description="Labeled split the models are measured on"
    )
    batch_size: int = Field(64, ge=1)
    samples: int = Field(3, ge=0, description="Generated samples shown in the report")
    sample_prompt_tokens: int = Field(
        8, ge=1, description="Classify: a sample continues this many tokens of a test text"
    )
    max_new_tokens: int = Field(48, ge=1)
    seed: int = Field(0, description="Seed of the sampled generations")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lm_eval: LMEvalConfig = Field(
        default_factory=LMEvalConfig, description="lm-eval-harness tasks (needs the lm_eval extra)"
    )
    curve: CurveConfig = Field(default_factory=CurveConfig)
