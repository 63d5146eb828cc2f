"""Tokenize stage: a tokenizer (trained, character-level or loaded) and packed token shards."""

from .config import TokenizeConfig
from .stage import TokenizeStage
from .tokenizer import TextTokenizer, load_tokenizer

__all__ = ["TextTokenizer", "TokenizeConfig", "TokenizeStage", "load_tokenizer"]
