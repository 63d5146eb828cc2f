"""The `tokenmill` command line. Every `run` goes through the Prefect flows.

Exit codes: 0 success, 2 bad usage or configuration, 1 a stage failed. Errors are one line on
stderr; the traceback goes to `<data-dir>/logs/last-error.txt`.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import flows  # noqa: F401  (sets the no-telemetry environment before Prefect loads)
from pipeline import observe
from pipeline.config import load_config
from pipeline.dataset import Dataset, is_published
from pipeline.errors import ConfigError, TokenmillError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="tokenmill: raw text to a trained language model.")
err = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="Data root: datasets, checkpoints, catalog")]


def _fail(code: int, message: str, data_dir: Path | None = None) -> None:
    if data_dir is not None:
        log = data_dir / "logs" / "last-error.txt"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            message += f" (traceback: {log})"
        except OSError:
            pass
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _NoTracebacks(logging.Filter):
    """Keeps tracebacks off the console (they still reach the Prefect API and the error log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        msg = record.getMessage()
        if "Traceback (most recent call last)" in msg:
            record.msg, record.args = msg.split("Traceback (most recent call last)")[0].rstrip(), None
        return True


def _quiet_console_tracebacks() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, PrefectConsoleHandler) and not any(isinstance(f, _NoTracebacks) for f in h.filters):
                h.addFilter(_NoTracebacks())


class _ProgressBars:
    """Renders `pipeline.observe` progress events as rich progress bars on stderr."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event != "progress" or not data.get("total"):
            return
        key = str(data.get("stage"))
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(key, total=data["total"])
        self.progress.update(self.tasks[key], completed=data.get("done", 0), total=data["total"])


@app.command()
def run(
    stages: Annotated[list[str] | None, typer.Argument(help="Stages to run (default: all), with their upstream")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="dotted.key=value (JSON values parsed)")] = None,
    data_dir: DataDir = Path("data"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per stage on stdout")] = False,
) -> None:
    """Run stages in pipeline order through the Prefect flows; cached stages do no work."""
    from pipeline.stages import ORDER

    try:
        cfg = load_config(config, set_ or [])
        wanted = list(stages or ORDER)
        unknown = [s for s in wanted if s not in ORDER]
        if unknown:
            raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(ORDER)}")
    except ConfigError as e:
        _fail(2, str(e))
    from flows.stages import end_to_end

    _quiet_console_tracebacks()
    data_dir.mkdir(parents=True, exist_ok=True)
    bars = _ProgressBars()
    remove = observe.add_reporter(bars)
    try:
        with bars.progress:
            summaries = end_to_end(config=cfg, data_dir=str(data_dir), stages=wanted)
    except ConfigError as e:
        _fail(2, str(e), data_dir)
    except TokenmillError as e:
        _fail(1, str(e), data_dir)
    except Exception as e:  # anything else is still one clear line, never a bare traceback
        _fail(1, f"{type(e).__name__}: {e}", data_dir)
    finally:
        remove()
    shown = [s for s in summaries if s["stage"] in wanted]
    if as_json:
        for s in shown:
            sys.stdout.write(json.dumps(s) + "\n")
        return
    table = Table(title="tokenmill run")
    for col in ("stage", "rows in", "rows out", "rejected", "cached", "dataset"):
        table.add_column(col)
    for s in summaries:
        table.add_row(s["stage"], str(s["rows_in"]), str(s["rows_out"]), str(s["rows_rejected"]), str(s["cached"]), s["path"])
    Console().print(table)
    Console().print(f"Results under {data_dir.resolve()}; query them with: tokenmill sql \"SELECT * FROM datasets\"")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the views: <stage>, <stage>_rejects, datasets, runs ...")],
    data_dir: DataDir = Path("data"),
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
) -> None:
    """Run DuckDB SQL with every dataset and catalog table available as views."""
    import duckdb

    from pipeline import sql as sqlmod

    try:
        cols, rows = sqlmod.query(data_dir, query)
    except duckdb.Error as e:
        _fail(2, f"SQL error: {e}".splitlines()[0])
    if fmt == "json":
        for r in rows:
            sys.stdout.write(json.dumps(dict(zip(cols, r, strict=True)), default=str) + "\n")
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        table = Table()
        for c in cols:
            table.add_column(c)
        for r in rows:
            table.add_row(*[_cell(v) for v in r])
        Console().print(table)


def _cell(v: Any, width: int = 80) -> str:
    s = str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def _open_dataset(ref: str, data_dir: Path) -> Dataset:
    from pipeline import catalog

    p = Path(ref)
    if is_published(p) or is_published(p.parent):
        return Dataset(p)
    if ref in {d.stage for d in catalog.published_datasets(data_dir)}:
        found = catalog.latest(data_dir, ref)
        if found:
            return found
    matches = [d for d in catalog.published_datasets(data_dir) if d.fingerprint.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(f"{ref!r} is not a dataset path, a stage name or a unique fingerprint prefix under {data_dir}")


@app.command()
def show(
    dataset: Annotated[str, typer.Argument(help="Dataset path, stage name (latest) or fingerprint prefix")],
    data_dir: DataDir = Path("data"),
    rows: Annotated[int, typer.Option(help="Rows to show")] = 5,
) -> None:
    """Show a dataset's manifest, counts and first rows."""
    try:
        ds = _open_dataset(dataset, data_dir)
    except ConfigError as e:
        _fail(2, str(e))
    m = dict(ds.manifest)
    m.pop("identity", None)
    Console().print_json(json.dumps(m, default=str))
    table = Table(title=f"first {rows} rows of {ds.data_path}")
    head = ds.head(rows).to_pylist()
    if head:
        for c in head[0]:
            table.add_column(c)
        for r in head:
            table.add_row(*[_cell(v, 60) for v in r.values()])
    Console().print(table)


@app.command()
def lineage(
    dataset: Annotated[str, typer.Argument(help="Dataset path, stage name (latest) or fingerprint prefix")],
    data_dir: DataDir = Path("data"),
) -> None:
    """List the raw source files that went into a dataset (through every stage before it)."""
    from pipeline import catalog

    try:
        ds = _open_dataset(dataset, data_dir)
    except ConfigError as e:
        _fail(2, str(e))
    with catalog.connect(data_dir, read_only=True) as con:
        for key, sha in con.execute(catalog.lineage_sql(), [ds.fingerprint]).fetchall():
            sys.stdout.write(f"{sha[:16]}  {key}\n")


def main() -> None:
    try:
        app()
    except ConfigError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
