"""A crashed stage run resumes from the units it finished; one writer per dataset version."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.dataset import Dataset, VersionBusy, is_published
from pipeline.dataset import Staging as ResumableStaging
from pipeline.hashing import sha256_file
from pipeline.stage import run_stage

REPO = Path(__file__).resolve().parents[1]

# A stage of four units, each writing its rows as several shards. A unit logs that it ran, and
# the unit named by TM_CRASH_AT kills its own process (SIGKILL: no cleanup runs) after writing
# its first shard, like a worker lost mid-shard.
STAGE_SRC = textwrap.dedent(
    """
    import os, signal
    import pyarrow as pa
    from pydantic import BaseModel
    from pipeline.dataset import DATA_VIEW
    from pipeline.schema import DOCUMENT_SCHEMA
    from pipeline.stage import Phase, Stage

    class DemoConfig(BaseModel):
        units: int = 4
        rows: int = 60

    def write_unit(ctx, i):
        with open(os.environ["TM_UNIT_LOG"], "a") as f:
            f.write(f"{i}\\n")
        w = ctx.writer(DATA_VIEW, DOCUMENT_SCHEMA, f"u{i:03d}", max_rows=20)
        for j in range(ctx.config.rows):
            w.write(pa.Table.from_pylist([{"id": f"d{i}-{j}", "text": f"unit {i} row {j} " * 5,
                "source": "demo", "url": None, "meta": None, "source_file": "f",
                "source_record": j}], schema=DOCUMENT_SCHEMA))
            if j == 25 and os.environ.get("TM_CRASH_AT") == str(i):
                os.kill(os.getpid(), signal.SIGKILL)
        w.close()
        return {"rows_in": ctx.config.rows, "rows_out": ctx.config.rows, "rejected": {}}

    class DemoStage(Stage):
        name = "demo"
        config_model = DemoConfig

        def phases(self):
            return [Phase("write", lambda ctx, _: list(range(ctx.config.units)), write_unit)]

        def validate(self, ctx, manifest):
            return None

    def run(root):
        from pipeline.stage import run_stage
        return run_stage(DemoStage(), DemoConfig(), root, {})

    if __name__ == "__main__":
        import sys
        run(sys.argv[1])
    """
)


@pytest.fixture()
def demo(tmp_path):
    src = tmp_path / "demo_stage.py"
    src.write_text(STAGE_SRC)
    spec = importlib.util.spec_from_file_location("demo_stage", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return src, mod


def _digests(ds: Dataset) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in ds.shard_paths()}


def test_killed_run_resumes_from_finished_units_and_output_is_identical(demo, tmp_path, monkeypatch):
    src, mod = demo
    log = tmp_path / "units.log"
    monkeypatch.setenv("TM_UNIT_LOG", str(log))
    root = tmp_path / "root"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TM_CRASH_AT": "2"}
    crashed = subprocess.run([sys.executable, str(src), str(root)], env=env, capture_output=True, text=True)
    assert crashed.returncode == -9, crashed.stderr
    assert log.read_text().split() == ["0", "1", "2"]
    staged = root / "datasets" / "demo" / ".staging"
    assert any(staged.rglob("u002-0000.parquet")), "the killed unit left a partial shard"

    result = mod.run(root)  # the re-run, in this process, no crash
    assert log.read_text().split() == ["0", "1", "2", "2", "3"], "units 0 and 1 were not run again"
    ds = result.dataset
    assert ds.num_rows() == 4 * 60 and result.counts["rows_out"] == 240
    assert sorted(ds.read_shard(i).num_rows for i in range(len(ds.shard_paths()))) == [20] * 12
    assert not staged.exists() or not any(p for p in staged.iterdir() if p.is_dir())

    # Byte-identical to a run that never crashed.
    clean = mod.run(tmp_path / "clean")
    assert clean.fingerprint == result.fingerprint
    assert _digests(clean.dataset) == _digests(ds)
    assert not [p.name for p in ds.path.iterdir() if p.name.startswith("_unit")], (
        "unit markers were published"
    )


def test_failed_unit_keeps_finished_ones_and_a_retry_runs_only_the_rest(demo, tmp_path, monkeypatch):
    _, mod = demo
    log = tmp_path / "units.log"
    monkeypatch.setenv("TM_UNIT_LOG", str(log))
    real = mod.write_unit

    def flaky(ctx, i):
        if i == 3:
            raise OSError("disk went away")
        return real(ctx, i)

    monkeypatch.setattr(mod, "write_unit", flaky)
    with pytest.raises(OSError):
        mod.run(tmp_path)
    monkeypatch.setattr(mod, "write_unit", real)
    result = mod.run(tmp_path)
    assert log.read_text().split() == ["0", "1", "2", "3"]
    assert result.dataset.num_rows() == 240 and is_published(result.path)


def test_second_writer_of_the_same_version_fails_clearly(demo, tmp_path, monkeypatch):
    _, mod = demo
    monkeypatch.setenv("TM_UNIT_LOG", str(tmp_path / "units.log"))
    from pipeline.stage import plan

    planned = plan(mod.DemoStage(), mod.DemoConfig(), tmp_path, {})
    holder = ResumableStaging(tmp_path, "demo", planned.fingerprint)
    try:
        with pytest.raises(
            VersionBusy, match=rf"demo version {planned.fingerprint} is being written.*pid {os.getpid()}"
        ):
            run_stage(mod.DemoStage(), mod.DemoConfig(), tmp_path, {})
        # A different version of the same stage is not blocked.
        other = run_stage(mod.DemoStage(), mod.DemoConfig(units=2), tmp_path, {})
        assert other.dataset.num_rows() == 120
    finally:
        holder.release()
    assert run_stage(mod.DemoStage(), mod.DemoConfig(), tmp_path, {}).dataset.num_rows() == 240


def test_leftovers_of_other_versions_are_cleaned_but_not_live_ones(demo, tmp_path, monkeypatch):
    _, mod = demo
    monkeypatch.setenv("TM_UNIT_LOG", str(tmp_path / "units.log"))
    staged = tmp_path / "datasets" / "demo" / ".staging"
    dead = staged / ("d" * 32)
    (dead / "data").mkdir(parents=True)
    live = ResumableStaging(tmp_path, "demo", "e" * 32)
    try:
        run_stage(mod.DemoStage(), mod.DemoConfig(units=1), tmp_path, {})
        assert not dead.exists(), "an abandoned staging dir of another version was removed"
        assert live.dir.exists(), "a staging dir a live writer holds was kept"
    finally:
        live.release()
