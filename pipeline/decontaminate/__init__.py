"""Decontamination: pretraining documents that share an n-gram with an evaluation text are rejected."""
