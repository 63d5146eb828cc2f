"""Labeled data for fine-tuning: classification (text, label) and instruction (prompt, response) sets."""
