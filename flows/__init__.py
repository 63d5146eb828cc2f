"""Prefect wrappers over `pipeline/`: retries, parallel map over shards, artifacts, schedules."""

import os

# No telemetry from an offline tool; set before Prefect or GX is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
