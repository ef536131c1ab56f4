"""Characters that are not text, kept out of stored stories and names.

C0 and C1 control characters (a bell, an escape sequence, NUL) other than tab, newline
and carriage return; lone surrogates (only YAML escapes like "\\ud800" and undecodable
bytes make them); Unicode noncharacters (U+FFFE, U+FFFF and their kin).  None of them is
ever meant in a headline or a name: they break MJML, SQLite's UTF-8, mail clients and
terminals, so they are removed (or, where removing would change a key, refused).
"""

from __future__ import annotations

import re

_NONCHARACTERS = r"\ufdd0-\ufdef" + "".join(
    rf"\U{plane * 0x10000 + 0xFFFE:08X}-\U{plane * 0x10000 + 0xFFFF:08X}" for plane in range(17))
NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff" + _NONCHARACTERS + "]")


def not_text(value: str) -> str:
    """The characters of `value` that are not text, named (`U+0007, U+001B`); "" if none."""
    found = sorted(set(NOT_TEXT.findall(value)))
    shown = ", ".join(f"U+{ord(ch):04X}" for ch in found[:5])
    return shown + (f" and {len(found) - 5} more" if len(found) > 5 else "")


def strip_not_text(value: str) -> str:
    return NOT_TEXT.sub("", value)


def visible(value: str) -> str:
    """`value` for a terminal: each character that is not text shown as U+FFFD."""
    return NOT_TEXT.sub("\ufffd", value)
