"""Shared fixtures. Prefect's test server starts once per session, only for tests that need it."""

import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = REPO.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def prefect_server():
    """One ephemeral Prefect API for every flow test in the session (it costs ~15 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def cli_env(prefect_server):
    """Environment for running the real `tokenmill` CLI in a subprocess against the test server."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}


@pytest.fixture
def shared_corpora() -> Path:
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"{SHARED_CORPORA} is absent: the shared corpora are optional")
    return SHARED_CORPORA


def web_sample(tmp_path_factory, docs: int) -> Path:
    """The first ``docs`` pages of the shared web sample as a JSONL file; skips when it is absent."""
    corpus = SHARED_CORPORA / "web" / "cc_main_2019-30_sample.jsonl"
    if not corpus.is_file():
        pytest.skip(f"{corpus} is absent: the shared corpora are optional")
    path = tmp_path_factory.mktemp("web") / "web.jsonl"
    with corpus.open() as src, path.open("w") as out:
        for _, line in zip(range(docs), src):
            out.write(line)
    return path


def stdlib_docstrings(modules: list[str], min_chars: int = 80) -> list[str]:
    """Real English text available everywhere: the docstrings of some standard-library modules
    (read with `ast`, in source order)."""
    import ast
    import importlib.util

    out = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars:
                    out.append(doc)
    return out


def write_jsonl(path: Path, texts: list[str], prefix: str) -> Path:
    import json

    path.write_text(
        "".join(json.dumps({"id": f"{prefix}{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    return path
