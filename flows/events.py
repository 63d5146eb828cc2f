"""The events tokenmill emits, for automations to match."""

# Emitted by every stage flow when it publishes (or finds cached) a dataset version; resource
# `tokenmill.dataset.<fingerprint>`, label `tokenmill.stage=<stage>`, payload: the run summary.
COMPLETED_EVENT = "tokenmill.stage.completed"
