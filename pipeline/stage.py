"""What a stage is, and the engine-neutral runner that executes one.

A stage is a list of phases. Each phase plans units of work (usually one per input shard) from
the previous phase's results and runs a function on each unit; the runner hands the units to a
``mapper``: a plain loop here, Prefect tasks (threads, Dask, Ray) in ``flows/``. After the last
phase, :meth:`Stage.finish` reports counts, the staged output is validated, and the version is
published atomically. A stage whose fingerprint is already published is a cache hit and does
no work.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel

from .dataset import (
    DATA_VIEW,
    REJECTS_VIEW,
    Dataset,
    ShardWriter,
    Staging,
    clean_staging,
    describe_shards,
    is_published,
    manifest_header,
    run_unit_resumable,
    version_dir,
)
from .errors import DataError, storage_full
from .hashing import fingerprint as make_fingerprint
from .schema import DOCUMENT_SCHEMA, REJECT_SCHEMA, SCHEMA_VERSION
from .storage import local_path
from .validation import Suite, documents_suite, validate_stage_output

log = logging.getLogger("tokenmill")

Mapper = Callable[[str, Callable[[Any], Any], Sequence[Any]], list[Any]]


def serial_map(phase: str, fn: Callable[[Any], Any], units: Sequence[Any]) -> list[Any]:
    return [fn(u) for u in units]


@dataclass
class StageContext:
    """Everything a unit of work needs; plain data so it pickles to Dask or Ray workers."""

    root: Path
    stage: str
    config: Any  # the stage's pydantic config model
    fingerprint: str
    staging_dir: Path
    inputs: dict[str, Path]  # upstream stage name -> published version directory
    parent: Path | None  # previous version of this stage's own series (incremental runs)
    identity: dict[str, Any] = field(default_factory=dict)  # what the fingerprint hashed
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific plan state
    units_dir: Path | None = None  # where finished units leave markers (see pipeline.dataset.staging)

    def input(self, name: str | None = None) -> Dataset:
        if name is None:
            (name,) = self.inputs
        return Dataset(self.inputs[name])

    def parent_dataset(self) -> Dataset | None:
        return Dataset(self.parent) if self.parent else None

    def view(self, name: str) -> Path:
        p = self.staging_dir / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def writer(self, view: str, schema: pa.Schema, prefix: str, **kw: Any) -> ShardWriter:
        return ShardWriter(self.view(view), schema, prefix=prefix, **kw)

    def rejects_writer(self, prefix: str) -> ShardWriter:
        return self.writer(REJECTS_VIEW, REJECT_SCHEMA, prefix)


@dataclass
class Phase:
    name: str
    plan: Callable[[StageContext, list[Any]], list[Any]]  # previous phase results -> units
    run: Callable[[StageContext, Any], Any]  # one unit -> a small picklable result


@dataclass
class StageResult:
    stage: str
    fingerprint: str
    path: Path  # the version directory; the data view is path / "data"
    cached: bool
    counts: dict[str, Any]
    stats: dict[str, Any]
    seconds: float = 0.0

    @property
    def dataset(self) -> Dataset:
        return Dataset(self.path)

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> StageResult:
        """Rebuild a result from its `summary()` (what flows pass between each other)."""
        ds = Dataset(Path(summary["path"]))
        m = ds.manifest
        return cls(
            m["stage"],
            m["fingerprint"],
            ds.path,
            summary["cached"],
            m["counts"],
            m.get("stats", {}),
            summary.get("seconds", 0.0),
        )

    @property
    def data_path(self) -> Path:
        return self.path / DATA_VIEW

    def summary(self) -> dict[str, Any]:
        """The one-line JSON the CLI prints for `--json`."""
        return {
            "stage": self.stage,
            "path": str(self.data_path),
            "fingerprint": self.fingerprint,
            "rows_in": self.counts.get("rows_in", 0),
            "rows_out": self.counts.get("rows_out", 0),
            "rows_rejected": self.counts.get("rows_rejected", 0),
            "rejected_by_reason": self.counts.get("rejected_by_reason", {}),
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
        }


class Stage:
    """One stage, declared once: everything else (the pipeline config, the Prefect flows, the
    CLI's stage list, the deployments) is derived from the registry of these in `pipeline.stages`.

    Subclasses set ``name``, ``inputs``, ``config_model``, ``description`` and ``schedule`` and
    define :meth:`phases`; :meth:`validation_suites` is the gate before publishing.
    """

    name: str = ""
    inputs: tuple[str, ...] = ()  # upstream stages, in order; the first is the main input
    config_model: type[BaseModel]
    description: str = ""  # one line: the stage flow's docstring and the deployment's description
    # Which scheduled end_to_end deployment runs it: the nightly data path (whose stage
    # deployments also chain on their upstream's completion event) or the weekly training.
    schedule: Literal["data", "training"] | None = None
    version: str = "1"  # bump when the same config would now produce different bytes
    data_schema: pa.Schema = DOCUMENT_SCHEMA
    # Whether the data view's rows are the records counted in rows_out (not so for packed tokens).
    rows_out_is_data_rows: bool = True
    unique_ids: bool = True  # the data view's ids are unique (validated before publish)

    # -- identity -----------------------------------------------------------------------------
    def identity(self, config: BaseModel, inputs: dict[str, Dataset], parent: Dataset | None) -> dict:
        """What the fingerprint hashes. Override to add inputs that are not datasets (files)."""
        return {
            "stage": self.name,
            "version": self.version,
            "config": config.model_dump(mode="json"),
            "inputs": {k: d.fingerprint for k, d in sorted(inputs.items())},
            "parent": parent.fingerprint if parent else None,
        }

    def series(self, config: BaseModel) -> str:
        """Versions of one stage with one config form a series (incremental appends)."""
        return make_fingerprint(stage=self.name, version=self.version, config=config.model_dump(mode="json"))

    def resolve_parent(
        self, config: BaseModel, root: Path, inputs: dict[str, Dataset], mapper: Mapper
    ) -> Dataset | None:
        """The previous version of this stage's series, produced first if need be.

        Default: when the main input has a parent, this stage's output for that parent (usually
        a cache hit). Source stages (no inputs) override this to find their series head.
        """
        if not self.inputs:
            return None
        main = self.inputs[0]
        parent = inputs[main].parent
        if parent is None:
            return None
        return run_stage(self, config, root, {**inputs, main: parent}, mapper).dataset

    def noop_result(self, planned: Planned) -> StageResult | None:
        """A result that stands for "nothing new to do" (incremental sources), else None."""
        return None

    # -- work -----------------------------------------------------------------------------------
    def prepare(self, ctx: StageContext) -> None:
        """Runs once in the driver before the phases (e.g. train a tokenizer); may fill ctx.extra."""

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        return {DATA_VIEW: self.data_schema, REJECTS_VIEW: REJECT_SCHEMA}

    def finish(self, ctx: StageContext, results: list[Any]) -> dict[str, Any]:
        """Return ``{"counts": {...}, "stats": {...}}`` from the last phase's results.

        The default sums per-unit ``rows_in``, ``rows_out`` and ``rejected`` (a reason -> count
        mapping), which is what most per-shard stages return.
        """
        return {"counts": sum_counts(results), "stats": {}}

    def on_published(self, result: StageResult) -> None:
        """Runs after a successful publish (e.g. remove resumable work files)."""

    def summary_markdown(self, dataset: Dataset) -> str | None:
        """A stage-specific markdown report of a published version (a Prefect artifact)."""
        return None

    def validation_suites(self, staging_dir: Path, manifest: dict[str, Any]) -> list[Suite] | None:
        """The expectations the staged output must meet before it is published (None: no gate).

        Default: the document suite for stages whose data view holds documents.
        """
        if set(DOCUMENT_SCHEMA.names) <= set(self.data_schema.names):
            return documents_suite(self, staging_dir, manifest)
        return None

    def validate(self, ctx: StageContext, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Check the staged output before it is published; raise ValidationFailed to refuse."""
        return validate_stage_output(self, ctx, manifest)


def sum_counts(results: list[dict[str, Any]]) -> dict[str, Any]:
    rows_in = rows_out = 0
    by_reason: dict[str, int] = {}
    for r in results:
        rows_in += r.get("rows_in", 0)
        rows_out += r.get("rows_out", 0)
        for k, v in r.get("rejected", {}).items():
            by_reason[k] = by_reason.get(k, 0) + v
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_rejected": sum(by_reason.values()),
        "rejected_by_reason": dict(sorted(by_reason.items())),
    }


def _run_unit(phase: Phase, ctx: StageContext, unit: Any) -> Any:
    try:
        if ctx.units_dir is None:
            return phase.run(ctx, unit)
        return run_unit_resumable(ctx.units_dir, phase.name, functools.partial(phase.run, ctx), unit)
    except OSError as e:
        # A full disk anywhere in a unit (scratch files, DuckDB, markers) is one clear error;
        # shard writers already name their file.
        full = storage_full(e, e.filename or ctx.staging_dir)
        if full is None:
            raise
        raise full from e


@dataclass
class Planned:
    """A stage whose inputs are resolved and fingerprint computed, ready to run or cached."""

    stage: Stage
    config: BaseModel
    root: Path
    inputs: dict[str, Dataset]
    parent: Dataset | None
    fingerprint: str
    identity: dict[str, Any]

    @property
    def path(self) -> Path:
        return version_dir(self.root, self.stage.name, self.fingerprint)

    @property
    def cached(self) -> bool:
        return is_published(self.path)

    def cached_result(self) -> StageResult:
        m = Dataset(self.path).manifest
        return StageResult(
            self.stage.name, self.fingerprint, self.path, True, m["counts"], m.get("stats", {})
        )


def plan(
    stage: Stage,
    config: BaseModel,
    root: str | Path,
    inputs: dict[str, Dataset],
    parent: Dataset | None = None,
) -> Planned:
    root = local_path(root)  # a store URL works in its local mirror (storage.py)
    ident = stage.identity(config, inputs, parent)
    fp = make_fingerprint(**ident)
    return Planned(stage, config, root, inputs, parent, fp, ident)


def execute(planned: Planned, mapper: Mapper = serial_map) -> StageResult:
    """Run a planned stage (or return the cache hit) and publish its output atomically."""
    if planned.cached:
        return planned.cached_result()
    stage, root = planned.stage, planned.root
    t0 = time.perf_counter()
    staging = Staging(root, stage.name, planned.fingerprint)
    clean_staging(root, stage.name, keep=planned.fingerprint)
    if staging.resumed_units:
        log.info(
            "%s: resuming %s, %d units already done", stage.name, planned.fingerprint, staging.resumed_units
        )
    ctx = StageContext(
        root=root,
        stage=stage.name,
        config=planned.config,
        fingerprint=planned.fingerprint,
        staging_dir=staging.dir,
        inputs={k: d.path for k, d in planned.inputs.items()},
        parent=planned.parent.path if planned.parent else None,
        identity=planned.identity,
        units_dir=staging.units_dir,
    )
    finishing = False
    try:
        stage.prepare(ctx)
        results: list[Any] = []
        for phase in stage.phases():
            units = phase.plan(ctx, results)
            results = mapper(f"{stage.name}.{phase.name}", functools.partial(_run_unit, phase, ctx), units)
        # finish() may clear scratch that finished units left; past this point a failed run
        # cannot be resumed unit by unit and starts over.
        finishing = True
        report = stage.finish(ctx, results)
        counts, stats = report["counts"], report.get("stats", {})
        manifest = {
            **manifest_header(stage.name, planned.fingerprint),
            "config": planned.config.model_dump(mode="json"),
            "code_version": stage.version,
            "identity": planned.identity,
            "series": stage.series(planned.config),
            "inputs": [
                {"stage": k, "fingerprint": d.fingerprint, "path": _rel(d.path, root)}
                for k, d in planned.inputs.items()
            ],
            "parent": (
                {"fingerprint": planned.parent.fingerprint, "path": _rel(planned.parent.path, root)}
                if planned.parent
                else None
            ),
            "counts": counts,
            "stats": stats,
            "totals": report.get("totals", {}),
            "schema_version": SCHEMA_VERSION,
        }
        views = stage.views(ctx)
        _check_counts(stage, staging, counts, views)
        manifest["validation"] = stage.validate(ctx, manifest)
        dataset = staging.publish(manifest, views)
    except BaseException:
        if finishing:
            staging.discard()
        else:
            staging.abort()  # keeps the finished units for a re-run
        raise
    result = StageResult(
        stage.name, planned.fingerprint, dataset.path, False, counts, stats, time.perf_counter() - t0
    )
    stage.on_published(result)
    return result


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _check_counts(
    stage: Stage, staging: Staging, counts: dict[str, Any], views: dict[str, pa.Schema]
) -> None:
    """Refuse to publish a dataset whose counts do not add up: nothing is lost silently."""
    rin, rout, rrej = counts["rows_in"], counts["rows_out"], counts["rows_rejected"]
    if rin != rout + rrej:
        raise DataError(f"{stage.name}: rows_in {rin} != rows_out {rout} + rows_rejected {rrej}")
    if sum(counts.get("rejected_by_reason", {}).values()) != rrej:
        raise DataError(f"{stage.name}: rejects by reason do not sum to rows_rejected {rrej}")
    if REJECTS_VIEW in views:
        written = sum(s.rows for s in describe_shards(staging.dir / REJECTS_VIEW))
        if written != rrej:
            raise DataError(f"{stage.name}: {written} reject rows written but {rrej} counted")
    if stage.rows_out_is_data_rows:
        written = sum(s.rows for s in describe_shards(staging.dir / DATA_VIEW))
        if written != rout:
            raise DataError(f"{stage.name}: {written} output rows written but {rout} counted")


def run_stage(
    stage: Stage,
    config: BaseModel,
    root: str | Path,
    inputs: dict[str, Dataset],
    mapper: Mapper = serial_map,
) -> StageResult:
    """Run a stage on its inputs, first catching up on earlier versions of the main input.

    When the main input is an incremental version (it has a parent), this stage's output for the
    parent is produced first (usually a cache hit) and becomes this output's parent, so every
    stage's series mirrors its input's series.
    """
    root = local_path(root)  # a store URL works in its local mirror (storage.py)
    parent = stage.resolve_parent(config, root, inputs, mapper)
    planned = plan(stage, config, root, inputs, parent)
    noop = stage.noop_result(planned)
    if noop is not None:
        return noop
    return execute(planned, mapper)
