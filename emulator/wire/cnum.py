"""How the C servers read numbers: 32-bit ``int`` wrap-around and ``sscanf`` ``%d`` conversions.

Shared by every codec and table that reproduces CppComet's or FreeSWITCH's integer parsing.
"""

from __future__ import annotations

C_SPACE = " \t\n\v\f\r"


def c_int(n: int) -> int:
    """Wrap to a C ``int`` (32-bit two's complement), as the original's integer conversions do."""
    return ((n + 2**31) % 2**32) - 2**31


def scan_int(text: str, pos: int, width: int | None = None) -> tuple[int, int] | None:
    """One ``sscanf`` ``%d`` / ``%<width>d`` conversion at ``pos``: (value, new pos) or None.

    Leading white space is skipped, a sign is allowed (it counts towards ``width``), the value
    wraps like a C ``int``.
    """
    while pos < len(text) and text[pos] in C_SPACE:
        pos += 1
    limit = len(text) if width is None else min(len(text), pos + width)
    sign = 1
    if pos < limit and text[pos] in "+-":
        sign = -1 if text[pos] == "-" else 1
        pos += 1
    start = pos
    while pos < limit and "0" <= text[pos] <= "9":
        pos += 1
    if pos == start:
        return None
    return c_int(sign * int(text[start:pos])), pos
