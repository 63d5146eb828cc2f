"""The one rule of the layers: `pipeline/` never imports Prefect."""

import ast
import subprocess
import sys
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"


def test_no_prefect_import_statement_in_pipeline():
    offenders = []
    for path in PIPELINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] in {"prefect", "flows"}]
    assert offenders == [], f"pipeline/ must stay free of Prefect: {offenders}"


def test_importing_every_pipeline_module_does_not_load_prefect():
    modules = sorted(
        ".".join(p.relative_to(PIPELINE.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in PIPELINE.rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not bad, bad[:5]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PIPELINE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
