"""The installed wheel is the product: it carries its run-time files and works outside a checkout."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME_FILES = (
    "pipeline/filter/lexicons/toxic_words.txt",
    "pipeline/filter/lexicons/negative_words.txt",
    "pipeline/filter/lexicons/identity_terms.json",
    "pipeline/configs/builtin-corpus.yaml",
    "deployments/prefect.yaml",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools builds in the source tree and would leave build/ in the checkout.
    src = tmp_path_factory.mktemp("source") / "tokenmill"
    skip = (".venv", ".git", "data", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*skip))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (whl,) = out.glob("tokenmill-*.whl")
    return whl


def test_wheel_carries_every_run_time_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in RUNTIME_FILES if f not in names]
    assert missing == [], f"the wheel lacks {missing}"
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_the_data_path_outside_the_checkout(wheel, tmp_path, cli_env):
    """A fresh venv holding the wheel (not editable); its dependencies are the test venv's."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    # The dependencies come from this interpreter's site-packages, after the venv's own (a .pth
    # path is appended, and .pth files inside it, such as an editable install's, are not run).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    corpus = work / "docs.jsonl"
    words = (
        "the river carried cold water past old mills and quiet farms toward a distant harbour town".split()
    )
    texts = [" ".join(random.Random(i).choices(words, k=80)) + "." for i in range(30)]
    texts += texts[:10]  # ten exact copies under new ids
    lines = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)]
    corpus.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in cli_env.items() if k != "PYTHONPATH"}  # the session's test server
    python = str(venv / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import pipeline, flows, deployments; print(pipeline.__file__, deployments.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert str(REPO) not in where.stdout and str(site) in where.stdout, where.stdout
    sets = ['ingest.sources=[{"path": "docs.jsonl"}]', "filter.gopher_quality.min_words=5"]
    run = subprocess.run(
        [
            python,
            "-m",
            "flows.cli",
            "run",
            "ingest",
            "dedup",
            "annotate",
            "filter",
            "--json",
            "--data-dir",
            "data",
        ]
        + [a for s in sets for a in ("--set", s)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summaries = {s["stage"]: s for s in map(json.loads, run.stdout.splitlines())}
    assert summaries["ingest"]["rows_out"] == 40
    assert summaries["dedup"]["rejected_by_reason"].get("dedup.exact") == 10
    assert summaries["filter"]["rows_in"] == summaries["dedup"]["rows_out"] <= 30
    # The deployment template and the bundled config are found as package data.
    check = subprocess.run(
        [
            python,
            "-c",
            "from flows import ops; from pipeline.configs import bundled; "
            "assert ops.PREFECT_YAML.is_file() and ops.render_prefect_yaml() == ops.PREFECT_YAML.read_text(); "
            "from prefect.flows import load_flow_from_entrypoint; import os; os.chdir(ops.REPO); "
            "assert load_flow_from_entrypoint('flows/stages.py:ingest_flow').name == 'ingest'; "
            "assert bundled('builtin-corpus').is_file(); print(ops.REPO)",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip() == str(site)
