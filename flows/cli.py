"""The `tokenmill` command line. Every `run` goes through the Prefect flows.

Exit codes: 0 success, 2 bad usage or configuration, 1 a stage failed. Errors are one line on
stderr; the traceback goes to `<data-dir>/logs/last-error.txt`.

Importing this module stays cheap (typer and rich only): every command imports what it needs
(Prefect, the stages, DuckDB, torch) when it runs, so `tokenmill --help` answers at once.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import flows  # noqa: F401  (sets the no-telemetry environment before Prefect loads)
from pipeline import observe, storage
from pipeline.errors import ConfigError, TokenmillError

if TYPE_CHECKING:
    from pipeline.dataset import Dataset

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="tokenmill: raw text to a trained language model."
)
err = Console(stderr=True)

DataDir = Annotated[
    str,
    typer.Option("--data-dir", help="Data root: a directory or an fsspec URL (s3://bucket/prefix)"),
]


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
            if isinstance(h, PrefectConsoleHandler) and not any(
                isinstance(f, _NoTracebacks) for f in h.filters
            ):
                h.addFilter(_NoTracebacks())


class _ProgressBars:
    """Renders `pipeline.observe` progress events as rich progress bars on stderr."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
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
    stages: Annotated[
        list[str] | None, typer.Argument(help="Stages to run (default: all), with their upstream")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="dotted.key=value (JSON values parsed)")
    ] = None,
    data_root: DataDir = "data",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per stage on stdout")
    ] = False,
) -> None:
    """Run stages in pipeline order through the Prefect flows; cached stages do no work."""
    data_dir = storage.resolve_root(data_root)
    from pipeline.config import load_config
    from pipeline.stages import ORDER

    try:
        cfg = load_config(config, set_ or [])
        wanted = list(stages or ORDER)
        unknown = [s for s in wanted if s not in ORDER]
        if unknown:
            raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(ORDER)}")
    except ConfigError as e:
        _fail(2, str(e))
    from flows.engines import api_for_workers
    from flows.stages import end_to_end

    _quiet_console_tracebacks()
    data_dir.mkdir(parents=True, exist_ok=True)
    bars = _ProgressBars()
    remove = observe.add_reporter(bars)
    try:
        with api_for_workers(cfg.engine), bars.progress:
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
    for col in ("stage", "rows in", "rows out", "rejected", "cached"):
        table.add_column(col)
    table.add_column("dataset", overflow="fold")
    for s in summaries:
        table.add_row(
            s["stage"],
            str(s["rows_in"]),
            str(s["rows_out"]),
            str(s["rows_rejected"]),
            str(s["cached"]),
            s["path"],
        )
    Console().print(table)
    Console().print(f"Results under {storage.display(data_dir)}; the run report is in {data_dir / 'reports'}")
    Console().print(
        'Query them with: tokenmill sql "SELECT stage, rows_in, rows_out, rows_rejected FROM datasets"'
    )


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help="SQL over the views: <stage>, <stage>_rejects, datasets, runs ...")
    ],
    data_root: DataDir = "data",
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
) -> None:
    """Run DuckDB SQL with every dataset and catalog table available as views."""
    data_dir = storage.resolve_root(data_root)
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

    return catalog.find(data_dir, ref)


@app.command()
def show(
    dataset: Annotated[str, typer.Argument(help="Dataset path, stage name (latest) or fingerprint prefix")],
    data_root: DataDir = "data",
    rows: Annotated[int, typer.Option(help="Rows to show")] = 5,
) -> None:
    """Show a dataset's manifest, counts and first rows."""
    data_dir = storage.resolve_root(data_root)
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
    data_root: DataDir = "data",
) -> None:
    """List the raw source files that went into a dataset (through every stage before it)."""
    data_dir = storage.resolve_root(data_root)
    from pipeline import catalog

    try:
        ds = _open_dataset(dataset, data_dir)
    except ConfigError as e:
        _fail(2, str(e))
    with catalog.connect(data_dir, read_only=True) as con:
        for key, sha in con.execute(catalog.lineage_sql(), [ds.fingerprint]).fetchall():
            sys.stdout.write(f"{sha[:16]}  {key}\n")


# --- data iteration: diff two versions, ablate data variants through a proxy model -----------


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="Version A: fingerprint (or prefix), dataset path or stage name")],
    b: Annotated[str, typer.Argument(help="Version B, of the same stage")],
    data_root: DataDir = "data",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    samples: Annotated[int, typer.Option(help="Sample documents shown per side")] = 3,
) -> None:
    """What changed between two versions of one stage (counts, rejects, documents, tokens).

    Rejects per rule A vs B, the documents kept by one and not the other (by source, with samples
    and the other's reject reason), tokens per source for tokenize versions."""
    data_dir = storage.resolve_root(data_root)
    from pipeline import catalog
    from pipeline.diff import diff_versions, render_markdown

    try:
        result = diff_versions(catalog.find(data_dir, a), catalog.find(data_dir, b), samples=samples)
    except ConfigError as e:
        _fail(2, str(e))
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return
    from rich.markdown import Markdown

    Console().print(Markdown(render_markdown(result)))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="""Train a small proxy model per data variant (and the baseline) and compare them.

    Usage: tokenmill ablate [--set k=v ...] --variant NAME --set k=v [--set ...] [--variant NAME2 --set ...]

    Each variant runs from the first stage its overrides touch through a proxy pretrain (and, with
    --until evaluate, fine-tune and evaluate); what runs agree on runs once and is shared. The
    comparison (held-out bits per byte and word perplexity on one decontaminated held-out set,
    downstream scores) is printed, written to <data-dir>/reports/ablations/<id>/, published as a
    Prefect artifact, and queryable as the `ablations` view of `tokenmill sql`. --set before the
    first --variant applies to every run.""",
)
def ablate(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (the base)")] = None,
    until: Annotated[
        str, typer.Option(help="Last stage of each run: pretrain, finetune or evaluate")
    ] = "evaluate",
    seeds: Annotated[int, typer.Option(help="Pretrain seeds per variant (noise estimate from 2 on)")] = 1,
    parallel: Annotated[int, typer.Option(help="Runs side by side")] = 2,
    proxy: Annotated[
        bool, typer.Option("--proxy/--no-proxy", help="Apply the small proxy pretrain preset")
    ] = True,
    heldout: Annotated[
        str | None, typer.Option(help="Held-out texts (any ingest source path); default: see README")
    ] = None,
    heldout_docs: Annotated[int, typer.Option(help="Held-out documents at most")] = 400,
    data_root: DataDir = "data",
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-variant summary as JSON")] = False,
) -> None:
    data_dir = storage.resolve_root(data_root)
    from pipeline.ablate.plan import parse_variant_args, plan_ablation

    try:
        base, variants = parse_variant_args(list(ctx.args))
        plan = plan_ablation(variants, until, config, base, seeds, proxy)  # fail fast, before Prefect
    except ConfigError as e:
        _fail(2, str(e))
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.ablate import ablate_flow
    from flows.engines import api_for_workers

    _quiet_console_tracebacks()
    data_dir.mkdir(parents=True, exist_ok=True)
    bars = _ProgressBars()
    remove = observe.add_reporter(bars)
    try:
        with api_for_workers(plan.runs[0].config.engine), bars.progress:
            runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=max(1, parallel))
            result = ablate_flow.with_options(task_runner=runner)(  # type: ignore[arg-type]
                variants=[{"name": v.name, "overrides": list(v.overrides)} for v in variants],
                until=until,
                config_path=str(config) if config else None,
                base_overrides=base,
                seeds=seeds,
                proxy=proxy,
                data_dir=str(data_dir),
                heldout=heldout,
                heldout_docs=heldout_docs,
            )
    except ConfigError as e:
        _fail(2, str(e), data_dir)
    except TokenmillError as e:
        _fail(1, str(e), data_dir)
    except Exception as e:
        _fail(1, f"{type(e).__name__}: {e}", data_dir)
    finally:
        remove()
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "id": result["id"],
                    "report": result["report"],
                    "summary": result["summary"],
                    "heldout": result["heldout"],
                },
                default=str,
            )
            + "\n"
        )
        return
    from rich.markdown import Markdown

    Console().print(Markdown(Path(result["report"]).read_text()))
    Console().print(f"Report: {result['report']}")


@app.command()
def verify(
    target: Annotated[
        str | None,
        typer.Argument(
            help="A stage (all its versions), a fingerprint prefix or a dataset path; default: everything"
        ),
    ] = None,
    data_root: DataDir = "data",
) -> None:
    """Check every shard against its manifest (size, sha256), like `git fsck`; exit 1 naming the damaged files."""
    data_dir = storage.resolve_root(data_root)
    from pipeline import catalog
    from pipeline.dataset import Dataset, is_published

    found = catalog.published_datasets(data_dir)
    if target is None:
        datasets = found
    else:
        p = storage.local_path(target)
        if is_published(p) or is_published(p.parent):
            datasets = [Dataset(p)]
        else:
            # by directory names: a version whose manifest is damaged is still found
            datasets = [d for d in found if d.path.parent.name == target] or [
                d for d in found if d.path.name.startswith(target)
            ]
        if not datasets:
            _fail(2, f"{target!r} is not a dataset path, a stage or a fingerprint prefix under {data_dir}")
    shards = damaged = 0
    for ds in datasets:
        try:
            shards += sum(len(v["shards"]) for v in ds.manifest["views"].values())
            bad = ds.damaged()
        except (OSError, ValueError, KeyError) as e:  # an unreadable manifest damages the whole version
            bad = [(ds.location, f"unreadable manifest ({type(e).__name__}: {e})")]
        for path, problem in bad:
            sys.stdout.write(f"damaged {ds.path.parent.name} {ds.path.name[:12]} {path}: {problem}\n")
        damaged += len(bad)
    summary = f"checked {shards} shards in {len(datasets)} datasets under {storage.display(data_dir)}"
    if damaged:
        err.print(f"[red]error:[/red] {damaged} damaged file(s); {summary}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    err.print(f"ok: {summary}", highlight=False, soft_wrap=True)


# --- running it like production (flows/ops.py): server, deploy, worker, trigger -------------


@app.command()
def server(
    data_root: DataDir = "data",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 4200,
) -> None:
    """Start the Prefect server and UI on 127.0.0.1, its SQLite database under the data root.

    SIGTERM or SIGINT stops it (API, UI and database) within seconds; exit code 0.
    """
    data_dir = storage.resolve_root(data_root)
    from flows import ops, supervise

    env = ops.server_env(data_dir, port)
    err.print(
        f"Prefect UI and API on http://127.0.0.1:{port} (database: {env['PREFECT_API_DATABASE_CONNECTION_URL']}).\n"
        f"Other terminals: export PREFECT_API_URL=http://127.0.0.1:{port}/api, then tokenmill deploy; tokenmill worker",
        highlight=False,
        soft_wrap=True,
    )
    code = supervise.serve_server(ops.server_command(port), env, say=_say)
    raise typer.Exit(code)


def _say(message: str) -> None:
    err.print(message, highlight=False, markup=False, soft_wrap=True)


@app.command()
def deploy(
    data_root: DataDir = "data",
    write_yaml: Annotated[
        bool, typer.Option("--write-yaml", help="Only regenerate deployments/prefect.yaml")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config the deployments run with")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="dotted.key=value for the deployments' config (JSON values parsed)"),
    ] = None,
) -> None:
    """Create the `process` work pool if missing and register every deployment in deployments/prefect.yaml.

    With --config/--set, every deployment (the nightly and weekly schedules included) runs with
    that config by default, e.g. `--set 'ingest.sources=[{"path": "s3://bucket/crawl/*.warc.gz"}]'`.
    """
    location, data_dir = data_root, storage.resolve_root(data_root)
    from flows import ops

    cfg = None
    if config is not None or set_:
        from pipeline.config import load_config

        try:
            cfg = load_config(config, set_ or [])
        except ConfigError as e:
            _fail(2, str(e))

    text = ops.render_prefect_yaml()
    current = ops.PREFECT_YAML.read_text() if ops.PREFECT_YAML.exists() else ""
    if text != current:
        ops.write_prefect_yaml()
        err.print(f"updated {ops.PREFECT_YAML} from the stage flows")
    if write_yaml:
        return
    url = ops.api_url()
    try:
        ops.wait_for_api(url, timeout=10)
    except RuntimeError as e:
        _fail(2, f"{e}; start one with `tokenmill server` or set PREFECT_API_URL")
    data_dir.mkdir(parents=True, exist_ok=True)
    result = ops.deploy(location if storage.is_url(location) else data_dir, url)
    if result.returncode != 0:
        err.print(result.stdout[-4000:] + result.stderr[-4000:], highlight=False, markup=False)
        _fail(1, "prefect deploy failed (output above)")
    if cfg is not None:
        configured = ops.apply_config(cfg, url)
        err.print(f"{len(configured)} deployments run with the given config by default")
    table = Table(
        title=f"deployments on {url} (pool {ops.WORK_POOL!r}, queue {ops.WORK_QUEUE!r}: one run at a time)"
    )
    for col in ("deployment", "schedule", "triggered by"):
        table.add_column(col)
    for spec in ops.deployment_specs():
        flow_name = spec["entrypoint"].rsplit(":", 1)[1].removesuffix("_flow")
        ups = ", ".join(f"{t['match']['tokenmill.stage']} completed" for t in spec.get("triggers", []))
        cron = ", ".join(f"{s['cron']} {s['timezone']}" for s in spec.get("schedules", []))
        table.add_row(f"{flow_name}/{spec['name']}", cron, ups)
    Console().print(table)
    Console().print(
        f"Data root: {storage.display(data_dir)}. Next: `tokenmill worker`, then `tokenmill trigger STAGE --set key=value`."
    )


@app.command()
def worker(
    run_once: Annotated[bool, typer.Option("--run-once", help="Run what is due now, then exit")] = False,
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once")] = None,
    grace_seconds: Annotated[
        float,
        typer.Option(
            "--grace-seconds",
            help="On SIGTERM/SIGINT: how long a run in progress may go on before it is cancelled",
        ),
    ] = 30,
) -> None:
    """Run a Prefect worker on the `process` pool; it runs the deployments' flow runs.

    SIGTERM or SIGINT stops polling at once; a run in progress may finish within --grace-seconds,
    then it is cancelled (state Cancelled). Exit code 0 after such a stop.
    """
    import os

    from flows import ops, supervise

    supervise.catch_stop_signals()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = ops.client_env()
    os.environ.update(env)  # the flow-run processes inherit it
    err.print(f"worker on pool {ops.WORK_POOL!r} for {env['PREFECT_API_URL']}", highlight=False)
    os.chdir(ops.REPO)
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        code = supervise.serve_worker(
            ops.WORK_POOL, grace_seconds=grace_seconds, run_once=run_once, limit=limit, say=_say
        )
    raise typer.Exit(code)


@app.command()
def trigger(
    stage: Annotated[str, typer.Argument(help="Stage name, or end_to_end")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key=value in the stage's config (JSON values parsed)")
    ] = None,
    input_: Annotated[
        list[str] | None, typer.Option("--input", help="upstream=path-or-fingerprint (default: latest)")
    ] = None,
    stages: Annotated[
        list[str] | None, typer.Option("--stage", help="end_to_end only: stages to run")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help="Default: the deployment's data root")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the run to finish (0: return at once)")
    ] = 0,
) -> None:
    """Run one stage's deployment with parameters (like `prefect deployment run STAGE/tokenmill`)."""
    from prefect.exceptions import ObjectNotFound

    from flows import ops

    try:
        inputs = {}
        for item in input_ or []:
            up, sep, ref = item.partition("=")
            if not sep:
                raise ConfigError(f"--input {item!r}: expected upstream=path-or-fingerprint")
            inputs[up] = ref
        params = ops.trigger_parameters(
            stage, set_ or [], inputs, str(data_dir) if data_dir else None, stages
        )
    except ConfigError as e:
        _fail(2, str(e))
    try:
        run_ = ops.trigger(stage, params, wait=wait)
    except ObjectNotFound:
        _fail(2, f"no deployment {ops.full_name(stage)!r}; run `tokenmill deploy` first")
    state = run_.state.name if run_.state else "Scheduled"
    Console().print(f"{run_.name} ({run_.id}): {state}\n{ops.ui_url(run_.id)}", highlight=False)
    if run_.state and run_.state.is_final() and not run_.state.is_completed():
        raise typer.Exit(1)


@app.command()
def generate(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="A checkpoint directory (…/pretrain/<fp>/checkpoint)")
    ],
    prompt: Annotated[str, typer.Option("--prompt", help="Text to continue")] = "",
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to sample")] = 200,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", help="Sample among the k most likely tokens")] = 200,
    seed: Annotated[int, typer.Option(help="Sampling seed")] = 1337,
) -> None:
    """Sample text from a pretrained (or fine-tuned instruct) checkpoint."""
    from pipeline.models.checkpoint import is_checkpoint
    from pipeline.pretrain.generate import generate as sample

    if not is_checkpoint(checkpoint):
        _fail(2, f"{checkpoint} is not a tokenmill checkpoint (no model.safetensors + model_config.json)")
    sys.stdout.write(
        sample(
            checkpoint, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed
        )
        + "\n"
    )


EXPORT_FORMATS = ("hf", "megatron", "nanogpt")


@app.command()
def export(
    source: Annotated[
        str,
        typer.Argument(
            help="hf: a checkpoint directory, or a pretrain/finetune dataset (path, stage name or "
            "fingerprint prefix); megatron, nanogpt: a tokenize dataset (same forms)"
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Output directory")],
    to: Annotated[str, typer.Option("--to", help="hf | megatron | nanogpt")] = "hf",
    append_eot: Annotated[
        bool, typer.Option("--append-eot", help="megatron: end each document with end-of-text")
    ] = False,
    data_root: DataDir = "data",
) -> None:
    """Export a model to a Hugging Face transformers directory, or tokens to Megatron / nanoGPT files."""
    data_dir = storage.resolve_root(data_root)
    try:
        if to not in EXPORT_FORMATS:
            raise ConfigError(f"--to {to!r}: expected one of {', '.join(EXPORT_FORMATS)}")
        if to == "hf":
            from pipeline.models.hf import export_checkpoint

            info = export_checkpoint(_checkpoint_dir(source, data_dir), out)
            Console().print(
                f"wrote {out} ({info['architecture']}); open it with transformers: "
                f"AutoModelForCausalLM.from_pretrained({str(out)!r})"
                if "labels" not in info
                else f"wrote {out} ({info['architecture']}, labels {', '.join(info['labels'])}); "
                f"AutoModelForSequenceClassification.from_pretrained({str(out)!r})",
                highlight=False,
                soft_wrap=True,
            )
            return
        from pipeline.tokenize.export import export_megatron, export_nanogpt

        tokens = _open_dataset(source, data_dir)
        info = export_megatron(tokens, out, append_eot) if to == "megatron" else export_nanogpt(tokens, out)
    except ConfigError as e:
        _fail(2, str(e))
    table = Table(
        title=f"{to} export of {info['source']} ({info['dtype']} ids, vocab {info['vocab_size']:,})"
    )
    for col in ("split", "documents", "tokens", "files"):
        table.add_column(col)
    for split, s in info["splits"].items():
        table.add_row(
            split, f"{s['documents']:,}", f"{s['tokens']:,}", ", ".join(str(out / f) for f in s["files"])
        )
    Console().print(table)


def _checkpoint_dir(ref: str, data_dir: Path) -> Path:
    """A checkpoint directory itself, or the ``checkpoint/`` of a pretrain or finetune dataset."""
    p = Path(ref)
    if p.is_dir() and ((p / "model_config.json").is_file() or not (p / "checkpoint").is_dir()):
        return p
    if p.is_dir():
        return p / "checkpoint"
    ds = _open_dataset(ref, data_dir)
    if ds.stage not in ("pretrain", "finetune"):
        raise ConfigError(f"{ref}: a {ds.stage} dataset holds no model; give a pretrain or finetune one")
    return ds.path / "checkpoint"


def main() -> None:
    try:
        app()
    except ConfigError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
