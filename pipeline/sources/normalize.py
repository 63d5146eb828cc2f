"""Text normalization applied to every ingested document."""

import re
import unicodedata

_NEWLINES = re.compile(r"\r\n?|\u2028|\u2029")
# C0/C1 control characters other than tab, newline and form feed carry no text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def normalize_text(text: str) -> str:
    """Unicode NFC, one newline convention, no byte-order mark or stray control characters."""
    text = _NEWLINES.sub("\n", text.lstrip("\ufeff"))
    text = _CONTROL.sub("", text)
    return unicodedata.normalize("NFC", text)
