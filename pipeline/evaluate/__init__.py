"""Evaluation of fine-tuned models against their baselines: metrics, tables and plots."""
