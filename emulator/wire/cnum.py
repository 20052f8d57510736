"""How the C servers read numbers: every C/C++ integer rule the emulator reproduces, in one place.

32-bit ``int`` wrap-around (:func:`c_int`), ``sscanf`` ``%d`` (:func:`scan_int`), ``strtol(..., 0)``
(:func:`c_strtol`) and its ``uint32_t`` use (:func:`c_atoui`), C++ ``std::stoi`` (:func:`stoi`) and
CppComet's own token conversion (:func:`leading_int`).  Shared by every codec and table that
reproduces CppComet's or FreeSWITCH's integer parsing; nothing else in the emulator converts text
to numbers the C way.
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


def c_strtol(text: str) -> int | None:
    """C ``strtol(text, NULL, 0)``: leading blanks, sign, ``0x`` hex, ``0`` octal, stops at the first
    bad digit.  ``None`` when no digit was read (FreeSWITCH then gets 0).  The value is not clamped
    to ``long`` (no caller reads numbers that large)."""
    s = text.lstrip(C_SPACE)
    sign = 1
    if s[:1] in "+-" and s[:1]:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base = 10
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        base, s = 16, s[2:]
    elif s[:1] == "0" and len(s) > 1:
        base = 8
    digits = "0123456789abcdef"[:base]
    n, seen = 0, False
    for ch in s.lower():
        if ch not in digits:
            break
        n = n * base + digits.index(ch)
        seen = True
    if not seen and base != 8:
        return None
    return sign * n


def c_atoui(text: str | None) -> int:
    """A number read with ``strtol`` into a C ``uint32_t`` (FreeSWITCH's member ids): no text or no
    digits give 0, a negative value wraps to 32 bits unsigned."""
    if not text:
        return 0
    value = c_strtol(text)
    if value is None:
        return 0
    return value & 0xFFFFFFFF if value < 0 else value


def stoi(text: str) -> int | None:
    """C++ ``std::stoi``: leading white space, optional sign, digits; ``None`` where it throws (no
    digits: ``invalid_argument``, outside a 32-bit ``int``: ``out_of_range``)."""
    text = text.lstrip(C_SPACE)
    i = 1 if text[:1] in "+-" and text[:1] else 0
    j = i
    while j < len(text) and "0" <= text[j] <= "9":
        j += 1
    if j == i:
        return None
    value = int(text[:j])
    return value if -2**31 <= value < 2**31 else None


def leading_int(text: str) -> int:
    """CppComet's integer conversion of a CometQL token (spec cometql.md 8.2): optional ``-``, then
    the leading decimal digits (``'12abc'`` -> 12, ``'abc'`` -> 0, ``'-5'`` -> -5).  The original
    computes in a C ``int``; values beyond 32 bits are returned unwrapped here (callers wrap with
    :func:`c_int` where the original stores the value in an ``int``)."""
    sign = 1
    pos = 0
    if text.startswith("-"):
        sign, pos = -1, 1
    end = pos
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return sign * int(text[pos:end]) if end > pos else 0
