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


ROOT = PIPELINE.parent


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (not under TYPE_CHECKING).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.
    Importing ``a.b.c`` also runs the ``__init__`` of packages ``a`` and ``a.b``: those count as
    imported too, unless they are packages of the importing module itself.
    """
    files = sorted(PIPELINE.rglob("*.py")) + sorted((ROOT / "flows").rglob("*.py"))
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body
            for n in ast.walk(stmt)
        }
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parent = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{parent}.{base}" if base else parent
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            own = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
            for t in targets:
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    if name in modules and name != mod and name not in own:
                        graph[mod].add(name)
    return graph


def test_no_import_cycles_in_pipeline_or_flows():
    """Lazy imports inside functions count too: a cycle hidden in a function is still a cycle."""
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            # A package importing its own submodules (re-exports) is not a cycle by itself.
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"
