"""What failed and where: compile errors and test failures turned into fixable `Failure`s."""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("name", "import", "module", "attribute", "keyword", "arg_count", "moved", "other")

_CANNOT_IMPORT = re.compile(r"cannot import name '([^']+)' from '([^']+)'")
_NO_MODULE = re.compile(r"No module named '([^']+)'")
_UNDEFINED = re.compile(r"(?:Undefined name|name) [`']([A-Za-z_]\w*)[`']")
_ATTR = re.compile(r"has no attribute '([^']+)'")
_MODULE_ATTR = re.compile(r"^module '([^']+)' has no attribute")
_KEYWORD = re.compile(r"^(?:[\w.<>]+\.)?([\w<>]+)\(\) got an unexpected keyword argument '(\w+)'")
_QUAL = re.compile(r"^([\w.<>]+)\(\)")
_COUNT = re.compile(r"takes (?:from \d+ to )?(\d+) positional arguments? but (\d+) (?:was|were) given")


@dataclass
class Failure:
    """One fixable problem at `path:line` (repo-relative)."""

    kind: str
    path: str
    line: int
    message: str
    name: str = ""  # the missing / wrong name
    owner: str = ""  # module or class qualname (attribute, import, keyword callee)
    choices: list[str] = field(default_factory=list)  # runtime attribute names of the owner
    tests: list[str] = field(default_factory=list)  # node ids that fail because of it
    step: str = "test"  # 'test' or the compile step that reported it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.kind, self.path, self.line, self.name)


def classify(exc_type: str, message: str, name: str | None) -> tuple[str, str, str]:
    """(kind, name, owner) of an exception; kind 'other' when no static fix applies."""
    if exc_type in ("NameError", "UnboundLocalError"):
        m = _UNDEFINED.search(message)
        return ("name", name or (m.group(1) if m else ""), "") if (name or m) else ("other", "", "")
    if exc_type == "ModuleNotFoundError":
        m = _NO_MODULE.search(message)
        return ("module", name or (m.group(1) if m else ""), "")
    if exc_type == "ImportError":
        m = _CANNOT_IMPORT.search(message)
        if m:
            return ("import", m.group(1), m.group(2))
        return "other", "", ""
    if exc_type == "AttributeError":
        m = _ATTR.search(message)
        mm = _MODULE_ATTR.search(message)
        return (
            ("attribute", name or (m.group(1) if m else ""), mm.group(1) if mm else "")
            if (name or m)
            else ("other", "", "")
        )
    if exc_type == "TypeError":
        m = _KEYWORD.search(message)
        q = _QUAL.search(message)
        if m:
            return "keyword", m.group(2), q.group(1) if q else m.group(1)
        m = _COUNT.search(message)
        if m and q:
            return "arg_count", q.group(1), f"{m.group(1)}:{m.group(2)}"
    return "other", "", ""


def _relative(path: str, root: Path) -> str | None:
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
    except ValueError:
        return None
    if any(p.startswith(".") or p in ("site-packages", "venv") for p in rel.parts[:-1]):
        return None
    return rel.as_posix()


def from_test_records(records: list[dict[str, Any]], root: Path) -> list[Failure]:
    """Failures from the capture plugin's records (`root`: where the tests ran), merged by location."""
    merged: dict[tuple[str, str, int, str], Failure] = {}
    for rec in records:
        kind, name, owner = classify(str(rec.get("exc_type")), str(rec.get("message", "")), rec.get("name"))
        frames = [(_relative(str(p), root), int(n)) for p, n in rec.get("frames") or []]
        inside = [(p, n) for p, n in frames if p is not None and p.endswith(".py")]
        if not inside:
            continue
        path, line = inside[-1]
        assert path is not None
        if kind == "other" and rec.get("exc_type") == "TypeError" and len(inside) > 1:
            # a callee that checks its own keywords (`raise TypeError("unknown attribute 'x'")`):
            # blame the caller's line when it passes that keyword
            caller_path, caller_line = inside[-2]
            bad = _keyword_at(root, caller_path, caller_line, _QUOTED.findall(str(rec.get("message", ""))))
            if caller_path is not None and bad:
                kind, name, owner, path, line = "keyword", bad, "", caller_path, caller_line
        if kind == "attribute" and not owner:
            owner = str(rec.get("owner") or "")
        failure = Failure(
            kind,
            path,
            line,
            str(rec.get("message", "")),
            name,
            owner,
            list(rec.get("choices") or []),
            step="test",
        )
        if kind == "other":
            failure.extra["exc_type"] = rec.get("exc_type")
        found = merged.setdefault(failure.key, failure)
        nodeid = str(rec.get("nodeid", ""))
        if nodeid and nodeid not in found.tests:
            found.tests.append(nodeid)
    return list(merged.values())


_QUOTED = re.compile(r"'([A-Za-z_]\w*)'")


def _keyword_at(root: Path, path: str | None, line: int, names: list[str]) -> str:
    """The first of `names` passed as `name=` on that line of the file, or ''."""
    if path is None or not names:
        return ""
    try:
        text = (root / path).read_text(encoding="utf-8").splitlines()[line - 1]
    except (OSError, UnicodeDecodeError, IndexError):
        return ""
    for name in names:
        if re.search(rf"(?<![\w.]){re.escape(name)}\s*=(?!=)", text):
            return name
    return ""


def from_compile_error(step: str, path: str, line: int, message: str) -> Failure:
    """A compile-step finding: undefined names (ruff F821, mypy) become 'name' failures."""
    m = _UNDEFINED.search(message)
    if m and ("F821" in message or "not defined" in message or "Undefined name" in message):
        return Failure("name", path, line, message, m.group(1), step=step)
    return Failure("other", path, line, message, step=step)


def read_records(results_file: Path) -> list[dict[str, Any]]:
    """The capture plugin's output for one run (and remove it); [] when absent or unreadable."""
    path = Path(f"{results_file}.fix.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
