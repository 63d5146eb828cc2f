"""Configuration of the evaluate stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
