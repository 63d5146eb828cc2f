"""Task runners for the engine named in the config: threads, a Dask cluster or a Ray cluster."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.config import EngineConfig
from pipeline.errors import ConfigError


def task_runner(engine: EngineConfig):
    if engine.runner == "threads":
        return ThreadPoolTaskRunner(max_workers=engine.workers)
    if engine.runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as e:
            raise ConfigError("engine.runner=dask needs the dask extra: pip install 'tokenmill[dask]'") from e
        if engine.address:
            return DaskTaskRunner(address=engine.address)
        # One single-threaded worker process per core: the work is CPU-bound Python.
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": engine.workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as e:
        raise ConfigError("engine.runner=ray needs the ray extra: pip install 'tokenmill[ray]'") from e
    return RayTaskRunner(address=engine.address) if engine.address else RayTaskRunner()


@contextlib.contextmanager
def api_for_workers(engine: EngineConfig) -> Iterator[None]:
    """Give worker processes a Prefect API to report to.

    Prefect's ephemeral API lives inside the driver's settings, which Dask or Ray worker processes
    do not inherit. When no `PREFECT_API_URL` is configured and the engine uses other processes,
    start a local API server and export its URL, the same way Prefect's test harness does.
    """
    if engine.runner == "threads" or os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


@contextlib.contextmanager
def shared_cluster(engine: EngineConfig) -> Iterator[EngineConfig]:
    """One Dask LocalCluster for a whole run, so each stage flow does not start its own."""
    if engine.runner != "dask" or engine.address:
        yield engine
        return
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=engine.workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield engine.model_copy(update={"address": cluster.scheduler_address})
