"""`tokenmill worker` and `tokenmill server` as services a supervisor can stop (systemd, Kubernetes).

A supervisor stops a service with SIGTERM, waits, then SIGKILLs whatever is left.

- `prefect worker start` turns SIGTERM into a SIGINT to itself and relies on the SIGINT handler it
  found at start-up: where SIGINT was inherited as ignored (a background job of a script) the
  worker polls on until SIGKILL; elsewhere asyncio cancels it together with its runs in progress.
  So `serve_worker` runs Prefect's `ProcessWorker` in-process under our own loop and signal
  handlers: Prefect claims, starts and cancels flow runs; we decide when polling stops, how long
  a run may go on and when it is cancelled. (README, "Stopping, and running under a supervisor".)
- `prefect server start` runs uvicorn in-process, which stops on SIGTERM but waits with no time
  limit for the requests in progress. `serve_server` runs it as a child in its own process group,
  forwards the first stop signal and SIGKILLs the group if it is not gone after `stop_seconds`.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_GRACE_SECONDS = 30.0
# After the grace period: how long Prefect gets to cancel a run (it SIGTERMs the run's process
# group with a cancel intent; the engine records Cancelled) before we SIGKILL it ourselves.
CANCEL_SECONDS = 20.0
SERVER_STOP_SECONDS = 10.0


Say = Callable[[str], Any]
_early: list[int] = []  # stop signals that came while the worker was still starting


def catch_stop_signals() -> None:
    """Remember a stop signal instead of dying of it, until `serve_worker` handles them itself.

    Importing Prefect and syncing with the API take seconds; a supervisor may stop the worker then.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: _early.append(signum))


# ---------------------------------------------------------------------------------------------
# Processes


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has Linux SIGKILL the child when this process dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False if it is gone already."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The worker


class _Runs:
    """The flow runs this worker has started, with their process (group) ids.

    Prefect's ProcessWorker starts each run in a new session (pid == pgid), so a signal to the
    worker never reaches a run, and the run's own children die with its group.
    """

    def __init__(self, worker: Any) -> None:
        self.pids: dict[Any, int | None] = {}  # flow run id -> pid, while `run` is in progress
        self.every_pid: set[int] = set()
        self._worker = worker
        self._run = worker.run
        worker.run = self._tracked_run  # ProcessWorker.run: the one place a run's process lives

    async def _tracked_run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> Any:
        import anyio

        status = task_status or anyio.TASK_STATUS_IGNORED
        runs = self

        class _Started:
            def started(self, value: Any = None) -> None:
                if isinstance(value, int):
                    runs.pids[flow_run.id] = value
                    runs.every_pid.add(value)
                status.started(value)

        self.pids[flow_run.id] = None
        try:
            return await self._run(flow_run=flow_run, configuration=configuration, task_status=_Started())
        finally:
            self.pids.pop(flow_run.id, None)

    def busy(self) -> int:
        """Runs claimed or running: the limiter's tokens (Prefect's own count, taken at claim time)."""
        return int(self._worker.limiter.borrowed_tokens)


def serve_worker(
    pool: str,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    run_once: bool = False,
    limit: int | None = None,
    say: Say = print,
) -> int:
    """Run a Prefect process worker until SIGTERM/SIGINT (or, with `run_once`, one poll's runs end).

    A stop signal ends polling at once. Runs in progress get `grace_seconds` to finish (a second
    signal ends the grace early); then each is cancelled through Prefect (state Cancelling, so
    the run ends Cancelled), and one still alive `CANCEL_SECONDS` later is SIGKILLed and marked
    Cancelled. Returns 0 after a clean stop. No process group it started outlives it.
    """
    return asyncio.run(_serve_worker(pool, grace_seconds, run_once, limit, say))


async def _serve_worker(pool: str, grace: float, run_once: bool, limit: int | None, say: Say) -> int:
    import anyio
    from prefect.settings import (
        PREFECT_WORKER_HEARTBEAT_SECONDS,
        PREFECT_WORKER_PREFETCH_SECONDS,
        PREFECT_WORKER_QUERY_SECONDS,
    )
    from prefect.utilities.services import critical_service_loop
    from prefect.workers.process import ProcessWorker

    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            stop.set()
            say(f"{sig.name}: polling stopped; runs in progress may finish within {grace:g} s")
        elif not hurry.is_set():
            hurry.set()
            say(f"{sig.name} again: cancelling the runs in progress now")

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    for signum in _early:
        on_signal(signal.Signals(signum))
    _early.clear()
    if stop.is_set():
        say("worker stopped before it started polling")
        return 0

    worker = ProcessWorker(
        work_pool_name=pool,
        # Always a limiter, so that Prefect counts what is claimed or running (unlimited by default).
        limit=limit or math.inf,  # type: ignore[arg-type]  # typed int | None; its limiter takes inf
        prefetch_seconds=PREFECT_WORKER_PREFETCH_SECONDS.value(),
        heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()),
    )
    runs = _Runs(worker)
    try:
        async with worker:
            async with anyio.create_task_group() as loops:

                async def poll() -> None:
                    await critical_service_loop(
                        workload=worker.get_and_submit_flow_runs,
                        interval=PREFECT_WORKER_QUERY_SECONDS.value(),
                        run_once=run_once,
                        jitter_range=0.3,
                        backoff=4,
                        printer=say,
                    )
                    loops.cancel_scope.cancel()  # run_once: that one poll was all

                async def heartbeat() -> None:
                    await critical_service_loop(
                        workload=worker.sync_with_backend,
                        interval=worker.heartbeat_interval_seconds,
                        jitter_range=0.3,
                        backoff=4,
                        printer=say,
                    )

                async def until_stopped() -> None:
                    await stop.wait()
                    loops.cancel_scope.cancel()

                loops.start_soon(poll)
                if not run_once:
                    loops.start_soon(heartbeat)
                loops.start_soon(until_stopped)
                say(f"worker {worker.name!r} polling pool {pool!r}")

            await _drain(worker, runs, grace, stop, hurry, say)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        for pid in runs.every_pid:  # last resort: nothing we started outlives us
            if kill_group(pid):
                say(f"killed leftover process group {pid}")
    say(f"worker {worker.name!r} stopped")
    return 0


async def _drain(
    worker: Any, runs: _Runs, grace: float, stop: asyncio.Event, hurry: asyncio.Event, say: Say
) -> None:
    """Wait for the runs in progress; after a stop signal, for at most `grace` seconds."""
    deadline = None
    while runs.busy():
        if stop.is_set() and deadline is None:
            deadline = time.monotonic() + grace
            say(f"waiting for {runs.busy()} run(s) in progress")
        if hurry.is_set() or (deadline is not None and time.monotonic() >= deadline):
            await _cancel_runs(worker, runs, say)
            return
        await asyncio.sleep(0.2)


async def _cancel_runs(worker: Any, runs: _Runs, say: Say) -> None:
    """Cancel every run in progress: through Prefect first, by SIGKILL when that does not end it."""
    from prefect.states import Cancelled, Cancelling

    reason = "tokenmill worker stopped by its supervisor before this run finished"
    asked: set[Any] = set()
    deadline = time.monotonic() + CANCEL_SECONDS
    while runs.busy() and time.monotonic() < deadline:
        for run_id in [r for r in list(runs.pids) if r not in asked]:
            asked.add(run_id)
            say(f"cancelling flow run {run_id}")
            try:
                await worker.client.set_flow_run_state(run_id, Cancelling(message=reason), force=True)
            except Exception as e:  # API gone: fall through to the kill below
                say(f"could not ask the API to cancel {run_id} ({e}); killing it")
                pid = runs.pids.get(run_id)
                if pid:
                    kill_group(pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
    for run_id, pid in list(runs.pids.items()):
        if pid and kill_group(pid):
            say(f"flow run {run_id} did not stop after cancellation; killed process group {pid}")
    deadline = time.monotonic() + 10
    while runs.busy() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    # The run's state must end Cancelled, never Running: a run killed before its engine could
    # record it (or whose infrastructure exit Prefect reported as Crashed) is set here.
    for run_id in asked:
        try:
            fr = await worker.client.read_flow_run(run_id)
            if fr.state is None or not fr.state.is_cancelled():
                await worker.client.set_flow_run_state(run_id, Cancelled(message=reason), force=True)
        except Exception as e:
            say(f"could not record flow run {run_id} as Cancelled: {e}")


# ---------------------------------------------------------------------------------------------
# The server


def serve_server(
    cmd: list[str], env: dict[str, str], *, stop_seconds: float = SERVER_STOP_SECONDS, say: Say = print
) -> int:
    """Run `prefect server start` as a child in its own process group until a stop signal.

    The first SIGTERM/SIGINT is forwarded as SIGTERM to the group (uvicorn shuts down: services
    stop, the database is closed); a group still there after `stop_seconds` (or at a second
    signal) is SIGKILLed. Returns 0 after a stop we asked for, else the server's exit code.
    """
    stopping: list[float] = []
    proc: subprocess.Popen | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopping:
            say(f"{signal.Signals(signum).name}: stopping the Prefect server")
            stopping.append(time.monotonic())
            if proc is not None:
                kill_group(proc.pid, signal.SIGTERM)
        elif proc is not None:
            kill_group(proc.pid, signal.SIGKILL)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    killed = False
    try:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent())
        if stopping:  # a signal came before the server had a pid
            kill_group(proc.pid, signal.SIGTERM)
        while True:
            try:
                code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stopping and not killed and time.monotonic() - stopping[0] > stop_seconds:
                    say(f"the server did not stop within {stop_seconds:g} s; killing it")
                    killed = kill_group(proc.pid, signal.SIGKILL)
    finally:
        if proc is not None:
            kill_group(proc.pid, signal.SIGKILL)  # anything the server started and left behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping and not killed:
        say("server stopped")
        return 0
    return code if code >= 0 else 128 - code
