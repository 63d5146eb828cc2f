"""The CLI through the Prefect flows (one ephemeral Prefect API for the session)."""

import json
import subprocess
import sys

import duckdb
import pytest

from pipeline.dataset import Dataset


@pytest.fixture(autouse=True)
def _env(cli_env):
    global ENV
    ENV = cli_env


def tm(*args):
    """The real CLI in a subprocess, talking to the session's Prefect test server."""
    cmd = [sys.executable, "-m", "flows.cli", *[str(a) for a in args]]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


def json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def raw(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    (d / "a.jsonl").write_text('{"text": "alpha doc"}\n{"oops": 1}\nnot json\n')
    (d / "b.jsonl").write_text('{"text": "beta doc"}\n')
    return d


def test_run_ingest_json_then_cached_then_sql_show_lineage(prefect_server, tmp_path, raw):
    data = tmp_path / "data"
    src = f'ingest.sources=[{{"path": "{raw}", "format": "jsonl"}}]'
    first = tm("run", "ingest", "--json", "--data-dir", data, "--set", src)
    assert first.returncode == 0, first.stderr
    (s,) = json_lines(first)
    assert {k: s[k] for k in ("stage", "rows_in", "rows_out", "rows_rejected", "cached")} == {
        "stage": "ingest",
        "rows_in": 4,
        "rows_out": 2,
        "rows_rejected": 2,
        "cached": False,
    }
    assert Dataset(s["path"]).num_rows() == 2
    second = tm("run", "ingest", "--json", "--data-dir", data, "--set", src)
    assert second.returncode == 0, second.stderr
    (s2,) = json_lines(second)
    assert s2["cached"] is True and s2["fingerprint"] == s["fingerprint"] and s2["path"] == s["path"]
    # the catalog agrees with the manifest
    q = tm(
        "sql",
        "SELECT rows_in, rows_out, rows_rejected FROM datasets WHERE stage = 'ingest'",
        "--data-dir",
        data,
        "--format",
        "json",
    )
    assert json_lines(q) == [{"rows_in": 4, "rows_out": 2, "rows_rejected": 2}]
    q = tm(
        "sql",
        "SELECT reason, count(*) n FROM ingest_rejects GROUP BY 1 ORDER BY 1",
        "--data-dir",
        data,
        "--format",
        "json",
    )
    assert json_lines(q) == [
        {"reason": "ingest.invalid_json", "n": 1},
        {"reason": "ingest.missing_text_field", "n": 1},
    ]
    q = tm(
        "sql",
        "SELECT count(*) AS n, bool_and(cached) AS all_cached FROM stage_runs",
        "--data-dir",
        data,
        "--format",
        "json",
    )
    assert json_lines(q) == [{"n": 2, "all_cached": False}]
    shown = tm("show", "ingest", "--data-dir", data)
    assert shown.returncode == 0 and s["fingerprint"] in shown.stdout
    files = tm("lineage", s["fingerprint"][:10], "--data-dir", data)
    assert sorted(line.split("  ")[1] for line in files.stdout.splitlines()) == [
        f"file:{raw / 'a.jsonl'}",
        f"file:{raw / 'b.jsonl'}",
    ]
    # the published dataset opens unchanged in DuckDB
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{s['path']}/*.parquet')").fetchall()[0][0]
    assert n == 2


def test_bad_usage_exits_2_with_one_line(prefect_server, tmp_path):
    for args in (
        ["run", "nosuchstage"],
        ["run", "--set", "ingest.max_doc_chars=notanumber"],
        ["run", "--set", "novalue"],
        ["run", "--config", tmp_path / "missing.yaml"],
        [
            "run",
            "ingest",
            "--set",
            f'ingest.sources=[{{"path": "{tmp_path}/none/*.jsonl"}}]',
            "--data-dir",
            tmp_path / "d",
        ],
    ):
        r = tm(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "error:" in r.stderr and "Traceback" not in r.stderr
        assert r.stdout == ""


def test_yaml_config_file_is_the_same_model(prefect_server, tmp_path, raw):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"ingest:\n  sources:\n    - path: {raw / 'b.jsonl'}\n  max_doc_chars: 5\n")
    r = tm("run", "ingest", "--json", "--config", cfg, "--data-dir", tmp_path / "d")
    (s,) = json_lines(r)
    assert s["rejected_by_reason"] == {"ingest.too_long": 1}


def test_changing_one_stage_reruns_it_and_downstream_only(tmp_path, raw):
    data = tmp_path / "data"
    src = f'ingest.sources=[{{"path": "{raw}"}}]'
    first = json_lines(tm("run", "dedup", "--json", "--data-dir", data, "--set", src))
    assert [s["stage"] for s in first] == ["dedup"] and first[0]["cached"] is False
    again = tm(
        "run", "ingest", "dedup", "--json", "--data-dir", data, "--set", src, "--set", "dedup.threshold=0.7"
    )
    by = {s["stage"]: s for s in json_lines(again)}
    assert by["ingest"]["cached"] is True
    assert by["dedup"]["cached"] is False and by["dedup"]["fingerprint"] != first[0]["fingerprint"]
