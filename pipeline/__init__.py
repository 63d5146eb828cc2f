"""tokenmill's library: every stage as plain functions over Arrow data, free of Prefect."""

__version__ = "0.1.0"
