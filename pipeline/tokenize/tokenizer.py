"""Tokenizers as one small class over Hugging Face `tokenizers`: trained BPE, character level, loaded.

Whatever its origin, a tokenizer is saved as ``tokenizer.json`` (the `tokenizers` format, so any
HF tool can open it) plus ``tokenizer_meta.json`` (kind, vocab size, end-of-text token and id,
fingerprint). The fingerprint is the hash of the serialized tokenizer, so two tokenizers with
the same fingerprint map every text to the same ids.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..errors import ConfigError
from ..hashing import sha256_bytes, sha256_file
from .config import EOT_TOKEN

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "tokenizer_meta.json"
UNK_TOKEN = "<unk>"  # character level: a character the vocabulary never saw


class TextTokenizer:
    """A `tokenizers.Tokenizer` plus what the pipeline needs to know about it.

    Encoding never adds special tokens (the packer writes the end-of-text token itself), and a
    text that happens to spell a special token is encoded as plain text, so documents cannot
    inject document boundaries.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        kind: str,
        eot_token: str = EOT_TOKEN,
        info: dict[str, Any] | None = None,
        saved: tuple[bytes, int, str] | None = None,
    ):
        """``saved``: the tokenizer's serialized form (UTF-8), vocab size and fingerprint when they
        are already known (a file whose hash matches the fingerprint it was saved with), so they
        are not recomputed.
        """
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True
        self.kind = kind
        self.eot_token = eot_token
        eot_id = tokenizer.token_to_id(eot_token)
        if eot_id is None:
            specials = sorted(t.content for t in tokenizer.get_added_tokens_decoder().values())
            raise ConfigError(
                f"end-of-text token {eot_token!r} is not in the vocabulary; special tokens: {specials}"
            )
        self.eot_id: int = eot_id
        self.info = dict(info or {})
        self.vocab_size: int
        if saved is not None:
            self._json, self.vocab_size, self.fingerprint = saved
        else:
            # Ids may have holes in loaded vocabularies: the bound every id is below is max id + 1.
            self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
            # Serialized once (tens of ms for a large vocabulary): the fingerprint and save() share
            # it. Kept as bytes: a byte-level vocabulary is mostly non-ASCII, and decoding or
            # encoding half a megabyte of it costs a millisecond each time.
            self._json = self.tokenizer.to_str(pretty=True).encode()
            self.fingerprint = sha256_bytes(self._json)[:32]

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """The smallest integer type that holds every id."""
        return np.uint16 if self.vocab_size <= 1 << 16 else np.uint32

    def to_json(self) -> str:
        return self.tokenizer.to_str(pretty=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.encode_native(texts)]

    def encode_native(self, texts: Sequence[str]) -> list[Encoding]:
        """Native, multi-threaded batch encoding (offsets skipped); releases the GIL while it runs."""
        return self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)

    def to_arrays(self, encodings: Sequence[Encoding]) -> tuple[np.ndarray, np.ndarray]:
        """All documents' ids concatenated, and each document's length."""
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        # One pass over every document's ids into a preallocated array: no per-document array
        # (short documents made that the larger cost) and no Python loop over tokens.
        ids = itertools.chain.from_iterable(e.ids for e in encodings)
        return np.fromiter(ids, dtype=self.dtype, count=int(lengths.sum())), lengths

    def encode_arrays(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.to_arrays(self.encode_native(texts))

    def set_word_cache(self, words: int) -> None:
        """Let a BPE model memoize up to ``words`` encoded words (others have no such cache).

        `tokenizers` caches 10,000 words and then stops adding. The size changes no id, only
        the time taken, and larger is not faster with several encoder threads (see the
        ``word_cache`` setting).
        """
        resize = getattr(self.tokenizer.model, "_resize_cache", None)
        if resize is not None:
            resize(words)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def meta(self) -> dict[str, Any]:
        return {
            **self.info,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "eot_token": self.eot_token,
            "eot_id": self.eot_id,
            "dtype": np.dtype(self.dtype).name,
            "fingerprint": self.fingerprint,
        }

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / TOKENIZER_FILE).write_bytes(self._json)
        (d / META_FILE).write_text(json.dumps(self.meta(), indent=2, sort_keys=True) + "\n")
        return d


def train_bpe(
    batches: Iterable[list[str]],
    vocab_size: int,
    min_frequency: int = 2,
    eot_token: str = EOT_TOKEN,
    special_tokens: Sequence[str] = (),
) -> TextTokenizer:
    """A GPT-2 style byte-level BPE trained on batches of texts (deterministic for equal input)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eot_token, *special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, so nothing is unknown
        show_progress=False,
    )
    tok.train_from_iterator(batches, trainer)
    return TextTokenizer(tok, "bpe", eot_token)


def build_char(
    batches: Iterable[list[str]], eot_token: str = EOT_TOKEN, special_tokens: Sequence[str] = ()
) -> TextTokenizer:
    """One token per character seen, ids in code point order (nanoGPT's), then eot, extras, unk.

    Built as a BPE model without merges: every character is its own token, which `tokenizers`
    encodes natively and serializes as an ordinary tokenizer.json.
    """
    chars: set[str] = set()
    for batch in batches:
        chars.update("".join(batch))
    specials = [eot_token, *special_tokens, UNK_TOKEN]
    vocab = {c: i for i, c in enumerate(sorted(chars - set(specials)))}
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK_TOKEN))
    tok.add_special_tokens(specials)
    tok.decoder = decoders.Fuse()  # characters join without separators
    return TextTokenizer(tok, "char", eot_token)


def tokenizer_file(path: str | Path) -> Path:
    """The tokenizer.json a path names: the file itself, or the one in a directory."""
    p = Path(path).expanduser()
    f = p / TOKENIZER_FILE if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(
            f"{path}: no tokenizer.json there (a tokenizer.json file or a directory holding one)"
        )
    return f


def source_digest(path: str | Path) -> str:
    """sha256 of the tokenizer file a path names, for fingerprints of loaded tokenizers."""
    return sha256_file(tokenizer_file(path))


_loaded: dict[tuple[str, ...], TextTokenizer] = {}
_loaded_lock = threading.Lock()
LOADED_TOKENIZERS = 4  # tokenizers kept per process by load_tokenizer


def load_tokenizer(path: str | Path, eot_token: str | None = None) -> TextTokenizer:
    """Open a ``tokenizer/`` directory written by :meth:`TextTokenizer.save`, a tokenizer.json or a
    local Hugging Face tokenizer directory (never the hub).

    The end-of-text token is, in order: ``eot_token``, the one in tokenizer_meta.json, the
    ``eos_token`` of a HF tokenizer_config.json, then ``<|endoftext|>``. A process that opens the
    same unchanged files again (a long-running worker, a stage and its units) parses them once.
    """
    f = tokenizer_file(path)
    raw = f.read_bytes()
    meta = _read_json(f.parent / META_FILE)
    hf_config = _read_json(f.parent / "tokenizer_config.json")
    eos = hf_config.get("eos_token")
    if isinstance(eos, dict):  # older HF configs store an AddedToken as a dict
        eos = eos.get("content")
    eot = eot_token or meta.get("eot_token") or eos or EOT_TOKEN
    digest = sha256_bytes(raw)
    key = (str(f.resolve()), digest, json.dumps(meta, sort_keys=True), eot)
    with _loaded_lock:
        known = _loaded.get(key)
    if known is None:
        known = _parse(f, raw, digest, meta, eot)
        with _loaded_lock:
            _loaded[key] = known
            while len(_loaded) > LOADED_TOKENIZERS:
                del _loaded[next(iter(_loaded))]
    # Callers may add to info; the native tokenizer is shared (encoding does not change it).
    loaded = copy.copy(known)
    loaded.info = dict(known.info)
    return loaded


def _parse(f: Path, raw: bytes, digest: str, meta: dict[str, Any], eot: str) -> TextTokenizer:
    tok = Tokenizer.from_buffer(raw)
    kind = meta.get("kind") or type(tok.model).__name__.lower()
    info = {k: v for k, v in meta.items() if k in ("source", "trained_on")}
    # A file saved by TextTokenizer.save, unchanged since: its bytes are the serialized form the
    # fingerprint hashes, and its meta holds the vocab size (no re-serializing, no vocab walk).
    unchanged = isinstance(meta.get("vocab_size"), int) and meta.get("fingerprint") == digest[:32]
    saved = (raw, meta["vocab_size"], digest[:32]) if unchanged else None
    loaded = TextTokenizer(tok, kind, eot, info, saved=saved)
    if meta.get("fingerprint") and meta["fingerprint"] != loaded.fingerprint:
        raise ConfigError(f"{f}: does not match the fingerprint in its {META_FILE}")
    return loaded


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from e
    return data if isinstance(data, dict) else {}
