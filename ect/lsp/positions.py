"""LSP positions <-> Python string indexes in the negotiated encoding (utf-8, utf-16 or utf-32).

A `Position.character` counts code units of the client's encoding; Python indexes count code points.
"""

from __future__ import annotations

import functools
import itertools

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def _units(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == UTF8:
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    if encoding == UTF16:
        return 2 if cp >= 0x10000 else 1
    return 1


def normalize(encoding: object) -> str:
    """The encoding name of a `PositionEncodingKind` (utf-16, the LSP default, when unknown)."""
    value = str(getattr(encoding, "value", encoding) or "").lower()
    return value if value in (UTF8, UTF16, UTF32) else UTF16


def to_index(line: str, units: int, encoding: str) -> int:
    """The code-point index in `line` of a client column (clamped to the line; inside a char: before it)."""
    if encoding == UTF32 or line.isascii():
        return max(0, min(units, len(line)))
    count = 0
    for i, ch in enumerate(line):
        count += _units(ch, encoding)
        if count > units:
            return i
    return len(line)


def to_units(line: str, index: int, encoding: str) -> int:
    """The client column of the code-point index `index` in `line`."""
    head = line[: max(0, index)]
    if encoding == UTF32 or head.isascii():
        return len(head)
    return sum(_units(ch, encoding) for ch in head)


def line_at(text: str, line: int) -> str:
    """Line `line` (0-based) of `text` without its end of line ('' past the end)."""
    from ect.lsp.completion import split_lines

    lines = split_lines(text)
    return lines[line] if 0 <= line < len(lines) else ""


@functools.lru_cache(maxsize=4)
def _line_starts(text: str) -> tuple[int, ...]:
    return (0, *itertools.accumulate(len(x) for x in text.splitlines(True)))


def offset_of(text: str, line: int, index: int) -> int:
    """The code-point offset in `text` of (line, code-point index), end of line counted as in `text`."""
    starts = _line_starts(text)
    return starts[min(max(line, 0), len(starts) - 1)] + index
