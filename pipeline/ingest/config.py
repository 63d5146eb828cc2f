"""Configuration of the ingest stage: where documents come from and how their fields map."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..sources import Item, LocatedSource, ReadOptions, read_hf
from ..sources.builtin import DefaultCorpusConfig
from ..sources.html import DEFAULT_EXTRACTOR, Extractor
from .urls import UrlFilterConfig

Format = Literal[
    "auto", "jsonl", "parquet", "csv", "tsv", "text", "warc", "wet", "html", "hf", "hf_disk", "default"
]


class SourceConfig(LocatedSource):
    """One source of documents. ``path`` is a file, a directory or a glob, local or an fsspec URL."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    format: Format = "auto"
    name: str | None = Field(None, description="Source label stored in each document; default: from path")
    text_field: str = "text"
    id_field: str | None = Field(None, description="Field holding a stable source id; else a content hash")
    url_field: str | None = "url"
    meta_fields: list[str] | None = Field(None, description="Fields kept in meta; default: all others")
    # plain text
    text_mode: Literal["file", "paragraphs"] = Field(
        "file", description="One document per file or per blank-line block"
    )
    # csv / tsv
    header: bool = True
    columns: list[str] | None = Field(None, description="Column names when the file has no header")
    quoting: Literal["auto", "csv", "none"] = Field(
        "auto",
        description="csv: double quotes group fields; none: quotes are text; auto: csv for .csv, none for .tsv",
    )
    # web: warc (response records with HTML), html (one page per file)
    extractor: Extractor = Field(
        DEFAULT_EXTRACTOR, description="HTML to text: resiliparse (fast, DCLM) or trafilatura (FineWeb)"
    )
    # Hugging Face
    hf_name: str | None = Field(None, description="Dataset name or builder ('json', 'parquet', a hub id)")
    hf_config: str | None = None
    data_files: list[str] | None = None
    split: str = "train"
    revision: str | None = None
    streaming: bool = True

    def read_options(self) -> ReadOptions:
        return ReadOptions(
            text_field=self.text_field,
            text_mode=self.text_mode,
            header=self.header,
            columns=tuple(self.columns) if self.columns is not None else None,
            quoting=self.quoting,
        )

    def read_hf(self, streaming: bool | None = None) -> Iterator[Item]:
        """The records of this ``hf`` or ``hf_disk`` source (``streaming`` defaults to the config's)."""
        return read_hf(
            disk_path=self.path if self.format == "hf_disk" else None,
            name=self.hf_name,
            config=self.hf_config,
            data_files=self.data_files,
            split=self.split,
            revision=self.revision,
            streaming=self.streaming if streaming is None else streaming,
        )


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[SourceConfig] = Field(default_factory=lambda: [SourceConfig(format="default")])
    default_corpus: DefaultCorpusConfig = Field(default_factory=DefaultCorpusConfig)
    max_doc_chars: int = Field(1_000_000, description="Longer documents go to rejects (ingest.too_long)")
    url_filter: UrlFilterConfig = Field(
        default_factory=UrlFilterConfig, description="Domain/URL blocklists and banned words in URLs"
    )
    shard_rows: int = Field(20_000, description="Rows per output shard")
