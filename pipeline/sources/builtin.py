"""The built-in offline corpus: real English prose found in every Python installation.

It feeds ingest (``format: default``) and the labeled stage's default task (docstrings labeled
by their standard-library package).

Three kinds of document, harvested at run time (nothing is shipped in the repository):

* ``stdlib``: docstrings of the standard library's modules, classes and functions, read with
  ``ast`` (nothing is imported). ``meta.package`` names the top-level package, which the
  fine-tune stage uses as a label.
* ``distributions``: the long descriptions of the installed distributions (their READMEs).
* ``licences``: the licence files those distributions ship. Many are near-copies of one another
  (MIT, BSD, Apache), which gives the dedup stage real near-duplicates to find.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import sys
import sysconfig
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field


class DefaultCorpusConfig(BaseModel):
    """The built-in offline corpus, harvested from this Python installation at run time."""

    model_config = ConfigDict(extra="forbid")

    stdlib_docstrings: bool = True
    distribution_descriptions: bool = True
    licence_files: bool = True
    min_chars: int = Field(40, description="Shorter docstrings are not worth a document")


STDLIB_CHUNK = 64  # stdlib files per unit of work
_SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idle_test",
    "__pycache__",
    "lib2to3",
    "turtledemo",
}
_LICENCE_FILE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE)[^/]*$", re.IGNORECASE)
# Units run in threads. CPython 3.11's ast.parse is not thread-safe (concurrent calls fail with
# "SystemError: AST constructor recursion depth mismatch"), and warnings.catch_warnings swaps
# process-global filters: both happen under this lock.
_PARSE_LOCK = threading.Lock()


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[Path] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
        out.extend(Path(d) / f for f in files if f.endswith(".py"))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def distributions() -> list[md.Distribution]:
    seen: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and name not in seen:
            seen[name] = dist
    return [seen[k] for k in sorted(seen)]


def units(cfg: DefaultCorpusConfig) -> list[dict[str, Any]]:
    """The default corpus split into units of work (plain dicts, picklable)."""
    out: list[dict[str, Any]] = []
    if cfg.stdlib_docstrings:
        n = len(stdlib_files())
        out += [
            {"part": "stdlib", "start": i, "stop": min(i + STDLIB_CHUNK, n)}
            for i in range(0, n, STDLIB_CHUNK)
        ]
    if cfg.distribution_descriptions:
        out.append({"part": "distributions"})
    if cfg.licence_files:
        out.append({"part": "licences"})
    return out


def identity() -> dict[str, Any]:
    """What the corpus depends on: the Python build and the installed distributions."""
    return {
        "python": sys.version,
        "stdlib_files": len(stdlib_files()),
        "distributions": [f"{d.metadata['Name']}=={d.version}" for d in distributions()],
    }


def read_unit(unit: dict[str, Any], cfg: DefaultCorpusConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    part = unit["part"]
    if part == "stdlib":
        files = stdlib_files()[unit["start"] : unit["stop"]]
        gen = docstrings(files, cfg.min_chars)
    elif part == "distributions":
        gen = _descriptions(cfg.min_chars)
    else:
        gen = _licences(cfg.min_chars)
    yield from enumerate(gen, 1)


def module_name(path: Path) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def docstrings(files: list[Path], min_chars: int) -> Iterator[dict[str, Any]]:
    for path in files:
        module = module_name(path)
        source = path.read_bytes()
        try:
            tree = parse_quietly(source, str(path))
        except (SyntaxError, ValueError):
            continue  # a few stdlib files are deliberately invalid (bad-syntax samples)
        package = module.split(".")[0]
        for qualname, kind, node in _walk(tree):
            doc = ast.get_docstring(node, clean=True)
            if not doc or len(doc) < min_chars:
                continue
            yield {
                "id": f"stdlib:{module}:{qualname}" if qualname else f"stdlib:{module}",
                "text": doc,
                "url": None,
                "package": package,
                "module": module,
                "object": qualname,
                "kind": kind,
            }


def parse_quietly(source: bytes, filename: str) -> ast.Module:
    """``ast.parse`` without SyntaxWarnings (old escape sequences in docstrings), thread-safely."""
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source, filename=filename)


DocNode = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef  # what holds a docstring


def _walk(tree: ast.Module) -> Iterator[tuple[str, str, DocNode]]:
    yield "", "module", tree
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    while stack:
        prefix, node = stack.pop(0)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                yield name, "class" if isinstance(child, ast.ClassDef) else "function", child
                stack.append((name + ".", child))


def _descriptions(min_chars: int) -> Iterator[dict[str, Any]]:
    for dist in distributions():
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""  # type: ignore[attr-defined]
        if len(body.strip()) < min_chars:
            continue
        name = dist.metadata["Name"]
        yield {
            "id": f"dist:{name.lower()}:description",
            "text": body,
            "url": dist.metadata.get("Home-page"),  # type: ignore[attr-defined]  # (3.12+ in the stubs)
            "distribution": name,
            "version": dist.version,
            "kind": "description",
        }


def _licences(min_chars: int) -> Iterator[dict[str, Any]]:
    for dist in distributions():
        name = dist.metadata["Name"]
        for f in sorted(dist.files or [], key=str):
            if not _LICENCE_FILE.search(str(f)):
                continue
            try:
                text = Path(cast(Path, dist.locate_file(f))).read_text(
                    encoding="utf-8", errors="tokenmill_repair"
                )
            except OSError:
                continue
            if len(text.strip()) < min_chars:
                continue
            yield {
                "id": f"dist:{name.lower()}:licence:{f}",
                "text": text,
                "url": None,
                "distribution": name,
                "version": dist.version,
                "kind": "licence",
                "file": str(f),
            }
