"""How pipeline work runs under Prefect: one task per unit of work, retried on I/O errors only."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import unmapped

from pipeline import observe
from pipeline.errors import is_transient


def retry_on_io(task_, task_run, state) -> bool:
    """Retry transient failures (I/O, network, object store) only; see `pipeline.errors.is_transient`."""
    try:
        state.result()
    except Exception as e:
        return is_transient(e)
    return False


@task(  # type: ignore[call-overload]  # cache_policy=None: Task handles it, its stubs omit None
    task_run_name="{phase}[{index}]",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_io,
    cache_policy=None,
    persist_result=False,
)
def run_unit(phase: str, index: int, fn: Callable[[Any], Any], unit: Any) -> Any:
    """One unit of a stage phase (usually one shard)."""
    return fn(unit)


def prefect_mapper(phase: str, fn: Callable[[Any], Any], units: Sequence[Any]) -> list[Any]:
    """A `pipeline.stage.Mapper` that maps units over Prefect tasks on the flow's task runner."""
    if not units:
        return []
    futures = run_unit.map(
        phase=unmapped(phase), index=list(range(len(units))), fn=unmapped(fn), unit=list(units)
    )
    results = []
    for done, f in enumerate(futures, 1):
        results.append(f.result())
        observe.report("progress", stage=phase, done=done, total=len(units))
    return results


class ProgressReporter:
    """Turns `pipeline.observe` events into Prefect log lines and progress artifacts."""

    def __init__(self) -> None:
        self.artifacts: dict[str, Any] = {}

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        try:
            logger = get_run_logger()
        except Exception:
            return  # outside a run context: nothing to show in the UI
        if event == "progress" and data.get("total"):
            key = str(data.get("stage", "stage"))
            pct = 100.0 * float(data.get("done", 0)) / float(data["total"])
            if key not in self.artifacts:
                slug = re.sub(r"[^a-z0-9-]+", "-", key.lower())  # artifact keys: lowercase, digits, dashes
                self.artifacts[key] = create_progress_artifact(
                    pct, key=f"{slug}-progress", description=f"{key} progress"
                )
            else:
                update_progress_artifact(self.artifacts[key], pct)
        elif event == "metrics":
            logger.info("metrics " + " ".join(f"{k}={v}" for k, v in data.items()))
        else:
            logger.info("%s %s", event, data)
