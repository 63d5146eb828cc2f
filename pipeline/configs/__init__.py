"""Bundled run profiles (package data), usable by name: ``tokenmill run --config builtin-corpus``.

- ``builtin-corpus.yaml``: the thresholds ``make run`` uses for the built-in offline corpus.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled(name: str) -> Path | None:
    """The bundled config called ``name`` (with or without ``.yaml``), else None."""
    entry = files(__name__) / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return Path(str(entry)) if entry.is_file() else None


def names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in files(__name__).iterdir() if p.name.endswith(".yaml"))
