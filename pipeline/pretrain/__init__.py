"""Pretraining: GPT / LSTM language models trained by maximum likelihood on packed token shards."""
