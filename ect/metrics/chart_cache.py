"""SVG charts of the HTML report kept between runs, keyed by what they plot.

A chart is a pure function of the figures it draws and of the code that draws it, so each is kept
under a hash of both: a report whose figures did not change draws nothing and never imports
matplotlib; when some changed, only those charts are drawn again. The file (`report-charts.json` in
the state directory) holds the `MAX_ENTRIES` charts drawn last, each with a checksum. Unreadable,
damaged, foreign or unwritable means drawing without it, never an error or a wrong chart.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, TypeGuard

CHARTS_NAME = "report-charts.json"
MAX_BYTES = 8 << 20  # a bigger file is not read (and is rewritten)
MAX_ENTRIES = 24  # four charts of a few recent reports (e.g. different windows)


def code_version(*sources: Path) -> str:
    """What identifies the drawing code: these source files and the installed matplotlib's version,
    read from its files (importing matplotlib is what the cache saves)."""
    h = hashlib.sha256()
    for src in sources:
        with contextlib.suppress(OSError):
            h.update(src.read_bytes())
    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):
        spec = None
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    if origin is not None:
        with contextlib.suppress(OSError):
            st = origin.stat()
            h.update(f"{origin}|{st.st_size}|{st.st_mtime_ns}".encode())
            h.update(origin.with_name("_version.py").read_bytes())
    return h.hexdigest()


def _checksum(value: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _valid(value: Any) -> TypeGuard[dict[str, Any]]:
    """The shape of a kept chart: {title, svg, series, empty, notes}."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("title"), str)
        and isinstance(value.get("svg"), str)
        and value["svg"].startswith("<svg")
        and value["svg"].rstrip().endswith("</svg>")
        and isinstance(value.get("series"), list)
        and all(isinstance(s, str) for s in value["series"])
        and isinstance(value.get("empty"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value["empty"].items())
        and isinstance(value.get("notes"), list)
        and all(isinstance(n, str) for n in value["notes"])
    )


class ChartCache:
    """{key: chart}; `salt` names the drawing code (a change drops every chart)."""

    def __init__(self, path: Path, salt: str) -> None:
        self.path = path
        self.salt = salt
        self.entries: dict[str, Any] = {}
        self.changed = False
        self.hits = self.misses = 0
        try:
            if path.stat().st_size <= MAX_BYTES:
                data = json.loads(path.read_text(encoding="utf-8"))
                if (
                    isinstance(data, dict)
                    and data.get("salt") == salt
                    and isinstance(data.get("entries"), dict)
                ):
                    self.entries = data["entries"]
            else:
                self.changed = True  # too big: written again, smaller
        except (OSError, ValueError, RecursionError):
            self.changed = path.exists()  # damaged: replaced at `save`

    def key(self, name: str, data: Any) -> str:
        """The key of chart `name` drawn from `data` (JSON-able, order kept: it is the drawing order)."""
        text = json.dumps([self.salt, name, data], allow_nan=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        value = entry.get("chart") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and _valid(value) and entry.get("sum") == _checksum(value):
            self.hits += 1
            return value
        if entry is not None:
            del self.entries[key]  # damaged: drawn again
            self.changed = True
        self.misses += 1
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.entries.pop(key, None)
        self.entries[key] = {"sum": _checksum(value), "chart": value}
        self.changed = True

    def save(self) -> None:
        """Write atomically (a temp file renamed over the old one); keep the newest `MAX_ENTRIES`."""
        if not self.changed or not self.path.parent.is_dir():
            return
        keep = dict(list(self.entries.items())[-MAX_ENTRIES:])
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"salt": self.salt, "entries": keep}), encoding="utf-8")
            os.replace(tmp, self.path)
            self.changed = False
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
