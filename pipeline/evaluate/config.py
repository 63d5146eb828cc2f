"""Configuration of the evaluate stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
