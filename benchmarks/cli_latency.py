"""How fast the CLI answers: `tokenmill --help` and a one-line `tokenmill sql` on the default data.

Each command runs ``--repeats`` times as a fresh process (what a user, a worker or a torchrun rank
pays at start); the median wall time counts, and the median CPU time (user + system) of the
process, which other load on a shared machine disturbs far less. The peer is the bare interpreter start
(``python -c pass``), which no command can beat; the headline also gives each command's time
over it. ``--data-dir`` must hold published datasets (run `make run` or `tokenmill run ingest`
first); without one, the sql query runs on an empty root (DuckDB opens, no catalog to attach).

Last line: ``help_s=… sql_s=… python_s=… help_cpu_s=… sql_cpu_s=…``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def timed(cmd: list[str], repeats: int, env: dict[str, str]) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of ``cmd`` as a fresh process."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = _children_cpu(), time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {r.stderr[-500:]}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT / "data"), help="a data root with published datasets")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "flows.cli"]
    query = "SELECT stage, rows_out FROM datasets LIMIT 3"
    if not (Path(args.data_dir) / "catalog.duckdb").is_file():
        print(f"{args.data_dir} holds no catalog: timing a query without the catalog tables")
        query = "SELECT 42"
    python_s, python_cpu = timed([sys.executable, "-c", "pass"], args.repeats, env)
    help_s, help_cpu = timed([*cli, "--help"], args.repeats, env)
    sql_s, sql_cpu = timed([*cli, "sql", query, "--data-dir", args.data_dir], args.repeats, env)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'command':40} {'wall s':>8} {'cpu s':>7} {'x python start':>15}")
    rows = (
        ("python -c pass", python_s, python_cpu),
        ("tokenmill --help", help_s, help_cpu),
        (f"tokenmill sql {query!r}"[:40], sql_s, sql_cpu),
    )
    for name, wall, cpu in rows:
        print(f"{name:40} {wall:8.3f} {cpu:7.3f} {wall / python_s:15.1f}")
    print(
        f"help_s={help_s:.3f} sql_s={sql_s:.3f} python_s={python_s:.3f} "
        f"help_cpu_s={help_cpu:.3f} sql_cpu_s={sql_cpu:.3f}"
    )


if __name__ == "__main__":
    main()
