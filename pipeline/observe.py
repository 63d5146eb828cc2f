"""A tiny hook through which long-running library code reports progress and metrics.

`pipeline/` must not import Prefect, yet training loops and big stages should show progress in
the Prefect UI. They call :func:`report`; the flows install a reporter that turns events into
log lines and Prefect artifacts, and the CLI installs one that drives a progress bar. With no
reporter installed, events go to the ``tokenmill`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Reporter = Callable[[str, dict[str, Any]], None]
_reporters: list[Reporter] = []
log = logging.getLogger("tokenmill")


def add_reporter(fn: Reporter) -> Callable[[], None]:
    """Install a reporter; returns a function that removes it again."""
    _reporters.append(fn)
    return lambda: _reporters.remove(fn) if fn in _reporters else None


def report(event: str, **data: Any) -> None:
    """Report an event such as ``"progress"`` (stage, done, total) or ``"metrics"`` (step, loss...)."""
    if not _reporters:
        log.debug("%s %s", event, data)
    for fn in list(_reporters):
        try:
            fn(event, data)
        except Exception:  # a broken reporter must never break the work it watches
            log.exception("reporter failed on %s", event)
