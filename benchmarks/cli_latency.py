"""How fast the CLI answers: `tokenmill --help` and a one-line `tokenmill sql` on the default data.

Each command runs ``--repeats`` times as a fresh process (what a user, a worker or a torchrun rank
pays at start); the median wall time counts. The peer is the bare interpreter start
(``python -c pass``), which no command can beat; the headline also gives each command's time
over it. ``--data-dir`` must hold published datasets (run `make run` or `tokenmill run ingest`
first); without one, the sql query runs on an empty root (DuckDB opens, no catalog to attach).

Last line: ``help_s=… sql_s=… python_s=…``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], repeats: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {r.stderr[-500:]}")
    return statistics.median(times)


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
    python_s = timed([sys.executable, "-c", "pass"], args.repeats, env)
    help_s = timed([*cli, "--help"], args.repeats, env)
    sql_s = timed([*cli, "sql", query, "--data-dir", args.data_dir], args.repeats, env)
    print(f"{'command':40} {'median s':>9} {'x python start':>15}")
    for name, s in (
        ("python -c pass", python_s),
        ("tokenmill --help", help_s),
        (f"tokenmill sql {query!r}"[:40], sql_s),
    ):
        print(f"{name:40} {s:9.3f} {s / python_s:15.1f}")
    print(f"help_s={help_s:.3f} sql_s={sql_s:.3f} python_s={python_s:.3f}")


if __name__ == "__main__":
    main()
