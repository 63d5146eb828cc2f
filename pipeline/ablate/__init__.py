"""Proxy ablations: data variants trained through a small model and compared on one held-out set.

`plan` resolves the runs and what they share, `heldout` chooses and scores the held-out text,
`compare` and `report` turn the runs into one table, plot and report. The Prefect wiring (shared
stages first, then each run's own stages as concurrent subflows) is `flows.ablate`.
"""
