"""Splitting text into words, lines and paragraphs: the units every signal counts.

One word splitter serves every signal so that "a word" means the same thing in Gopher, C4,
FineWeb, toxicity and bias columns. It follows the shape of spaCy's English tokenizer (which
datatrove's filters use): text splits on whitespace; punctuation at either end of a chunk, and
hyphens between letters, become tokens of their own; contractions split as ``do|n't``, ``it|'s``;
URLs, e-mail addresses, decimals and dotted abbreviations stay whole. It is one compiled regex
run over the whole text, not a Python loop over characters.
"""

from __future__ import annotations

import sys

import regex

# Letters, combining marks and digits: what makes a token a word rather than a symbol.
WORD_CHARS = r"\p{L}\p{M}\p{N}"
# Unicode's Sentence_Terminal property: . ! ? and their counterparts in other scripts.
TERMINAL_PUNCT = "".join(chr(c) for c in range(sys.maxunicode + 1) if regex.match(r"\p{STerm}", chr(c)))
TERMINAL_PUNCT_CLASS = "[" + regex.escape(TERMINAL_PUNCT, special_only=False) + "]"

_W = f"[{WORD_CHARS}]"
_SUFFIX = r"[’'](?:s|re|ve|ll|d|m)(?![\p{L}\p{M}\p{N}])"  # the 's of "it's", the 're of "we're"
WORD_RE = regex.compile(
    rf"""
    (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]'’]            # a URL, minus trailing punctuation
  | [{WORD_CHARS}._%+-]*{_W}@{_W}[{WORD_CHARS}.-]*{_W}          # an e-mail address
  | {_W}+(?=n[’']t(?!{_W}))                                    # do|n't
  | n[’']t(?!{_W})
  | (?<={_W}){_SUFFIX}                                         # it|'s, we|'re
  | (?:{_W}\.){{2,}}                                           # U.S. e.g.
  | (?<![{WORD_CHARS}])\p{{Lu}}\.(?!{_W})                       # initials: J.
  # A word runs from a letter or digit to the last one before the next space, keeping inner
  # symbols (3.5, 1,000, O'Neil, a/b, f(x) as spaCy does) but splitting at hyphens between
  # words, ellipses and contraction suffixes.
  | (?:[\p{{Cf}}/\\]*|-(?=\d)){_W}(?:(?:[^\s\-….’']|\.(?!\.)|-(?!{_W})|[’'](?!(?:s|re|ve|ll|d|m)(?!{_W})))*{_W})?
  | \.{{2,}} | … | -+                                           # an ellipsis or a dash run is one token
  | \S                                                         # any other symbol, one per token
    """,
    regex.VERBOSE | regex.IGNORECASE,
)

# A token holding only these is a symbol, not a word (Gopher counts words without them).
SYMBOL_ONLY_RE = regex.compile(r"^[\p{P}\p{Cc}$+<=>^`|~]+$")
HAS_ALPHA_RE = regex.compile(r"\p{L}")


def split_words(text: str) -> list[str]:
    """The text's tokens, in order (words, numbers, URLs and single punctuation marks)."""
    return WORD_RE.findall(text)
