"""Numbers read from text a client, an operator or a file wrote: one rule for every one."""

from __future__ import annotations


def whole_number(text: str) -> int | None:
    """`text` as a whole number, or None: ASCII digits only (str.isdigit also takes "²" and
    "٣", and int() takes "1_0"), at most 18 of them (int() refuses over 4,300, and no
    version or bound here needs 19)."""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None
