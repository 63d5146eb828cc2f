"""Configuration of the labeled-data stage: where labeled examples come from and how fields map."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..sources import LocatedSource, ReadOptions

Format = Literal["auto", "jsonl", "parquet", "csv", "tsv", "hf", "hf_disk", "default"]
Split = Literal["train", "validation", "test"]

# The default tasks read the docstrings of six standard-library packages with many docstrings
# and clearly different subjects (GUI, async I/O, mail, logging, tests, XML).
#  - packages: which package does a docstring come from? A few words of each docstring (module
#    and class names) decide it, so TF-IDF + logistic regression solves it from the labels alone.
#  - fluency: is a docstring's opening as written, or are its words shuffled? What decides it is
#    which word sequences are natural, which is what a language model learns from unlabeled text:
#    the task on which pretraining can show what it is worth when labels are few.
DEFAULT_PACKAGES = ["asyncio", "email", "logging", "tkinter", "unittest", "xml"]
FLUENCY_LABELS = ("natural", "shuffled")


class LabeledSourceConfig(LocatedSource):
    """One source of labeled examples. ``path`` is a file, a directory or a glob."""

    default_label: ClassVar[str] = "stdlib-packages"

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    format: Format = "auto"
    name: str | None = Field(None, description="Source label stored in each row; default: from path")
    text_field: str = Field("text", description="Classification: the input text")
    label_field: str = Field("label", description="Classification: the class label")
    prompt_field: str = Field("prompt", description="Instruction tuning: the prompt")
    response_field: str = Field("response", description="Instruction tuning: the response")
    id_field: str | None = Field(None, description="Field holding a stable id; else a content hash")
    split_field: str | None = Field(None, description="Field naming each row's split (train/validation/test)")
    split: Split | None = Field(None, description="Every row of this source belongs to this split")
    # csv / tsv
    header: bool = Field(True, description="The first line names the columns")
    columns: list[str] | None = Field(None, description="Column names when the file has no header")
    quoting: Literal["auto", "csv", "none"] = Field(
        "auto",
        description="'csv': double quotes delimit fields; 'none': quotes are text. auto: csv for .csv, none for .tsv "
        "(tab-separated corpora such as UCI sentences hold unbalanced quotes)",
    )
    # Hugging Face (local files or save_to_disk directories; no hub downloads at run time)
    hf_name: str | None = Field(
        None, description="Builder ('json', 'csv', 'parquet') or a local dataset script dir"
    )
    hf_config: str | None = None
    data_files: list[str] | None = None
    hf_split: str = "train"

    def read_options(self, text_field: str) -> ReadOptions:
        """Reader settings; ``text_field`` is the text (classify) or prompt (instruct) field."""
        return ReadOptions(
            text_field=text_field,
            header=self.header,
            columns=tuple(self.columns) if self.columns is not None else None,
            quoting=self.quoting,
        )


class DefaultTaskConfig(BaseModel):
    """The built-in task on docstrings of a few standard-library packages: by package, or by fluency."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["packages", "fluency"] = Field(
        "packages",
        description="packages: label each docstring by its package; fluency: keep its first fluency_words "
        "words, shuffle them in half of the docstrings (chosen by a hash of the id), label natural/shuffled",
    )
    fluency_words: int = Field(48, ge=8, description="Fluency: words kept from the start of each docstring")

    packages: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PACKAGES), description="Top-level packages (labels)"
    )
    min_chars: int = Field(40, description="Shorter docstrings are not worth an example")


class LabeledConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Literal["classify", "instruct"] = Field(
        "classify", description="classify: text + label; instruct: prompt + response"
    )
    sources: list[LabeledSourceConfig] = Field(
        default_factory=lambda: [LabeledSourceConfig(format="default")]
    )
    default_task: DefaultTaskConfig = Field(default_factory=DefaultTaskConfig)
    labels: list[str] | None = Field(
        None,
        description="Allowed labels in id order; other labels go to rejects. Default: every label seen, sorted",
    )
    max_per_label: int | None = Field(
        None, description="Keep at most this many rows per label (seeded choice)"
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Validation share of rows without a given split")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="Test share of rows without a given split")
    seed: int = Field(0, description="Seed of the stratified split and of max_per_label's choice")
    max_text_chars: int = Field(100_000, description="Longer texts go to rejects (labeled.too_long)")
    dedup: bool = Field(
        True, description="Exact repeats of an input go to rejects, so no test text is trained on"
    )
    shard_rows: int = 50_000

    @model_validator(mode="after")
    def _fractions(self) -> LabeledConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave rows for training")
        return self
