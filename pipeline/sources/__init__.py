"""Reading raw source files, shared by every stage that reads them (ingest, labeled, ...).

- :mod:`.location`: the source config base, path expansion (file, directory, glob), one unit of
  work per file with its content hash, digests of Hugging Face sources;
- :mod:`.readers`: one reader per file format, yielding records or :class:`Problem`s (a damaged
  record or file becomes a reject with its reason, never an exception) or :class:`Skipped`s;
- :mod:`.records`: what readers yield (records, :class:`Problem`, :class:`Skipped`) and the
  counted UTF-8 repair;
- :mod:`.warc`: WARC and WET files (fastwarc), :mod:`.html`: charsets and HTML text extraction.

Rejects themselves (columns, truncation) are :mod:`pipeline.rejects`.
"""

from .location import LocatedSource, expand_path, file_units, hf_digest, tree_digest
from .readers import Item, Problem, ReadOptions, Skipped, detect_format, read_file, read_hf, take_repairs

__all__ = [
    "Item",
    "LocatedSource",
    "Problem",
    "ReadOptions",
    "Skipped",
    "detect_format",
    "expand_path",
    "file_units",
    "hf_digest",
    "read_file",
    "read_hf",
    "take_repairs",
    "tree_digest",
]
