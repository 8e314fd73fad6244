"""Minimal line-based text edits between two versions of a document (LSP 0-based positions)."""

from __future__ import annotations

import difflib


def line_edits(old: str, new: str) -> list[tuple[int, int, str]]:
    """(start line, end line exclusive, replacement text) for each changed block of whole lines."""
    a = old.splitlines(True)
    b = new.splitlines(True)
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.append((i1, i2, "".join(b[j1:j2])))
    return out
