"""Completion and fix telemetry: shown / accepted / dismissed, recorded off the request path."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ect import events


@dataclass
class Shown:
    id: int
    uri: str
    origin: str  # 'index' | 'model'
    model: str
    items: int
    accepted: bool = False


class Telemetry:
    """Writes events in a background thread; a shown completion that is not accepted before the next one
    in the same document is recorded as dismissed."""

    def __init__(self, state_dir: Path, repo: str) -> None:
        self.state_dir = state_dir
        self.repo = repo
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ect-events")
        self._ids = itertools.count(1)
        self._open: dict[str, Shown] = {}  # uri -> last shown
        self._by_id: dict[int, Shown] = {}
        self._lock = threading.Lock()

    def _record(self, kind: str, **fields: Any) -> None:
        self._pool.submit(events.record, self.state_dir, kind, source="lsp", repo=self.repo, **fields)

    def shown(self, uri: str, origin: str, model: str, items: int, chars: int) -> int:
        with self._lock:
            self._dismiss(uri)
            s = Shown(next(self._ids), uri, origin, model, items)
            self._open[uri] = s
            self._by_id[s.id] = s
            if len(self._by_id) > 1000:
                for old in sorted(self._by_id)[:500]:
                    self._by_id.pop(old, None)
        self._record("completion.shown", origin=origin, model=model, items=items, chars=chars, shown_id=s.id)
        return s.id

    def accepted(self, shown_id: int, chars: int, label: str) -> bool:
        with self._lock:
            s = self._by_id.get(shown_id)
            if s is None or s.accepted:
                return False
            s.accepted = True
        self._record(
            "completion.accepted",
            origin=s.origin,
            model=s.model,
            chars=chars,
            label=label,
            shown_id=shown_id,
            outcome="accepted",
        )
        return True

    def _dismiss(self, uri: str) -> None:
        prev = self._open.pop(uri, None)
        if prev is not None and not prev.accepted:
            self._record(
                "completion.dismissed",
                origin=prev.origin,
                model=prev.model,
                items=prev.items,
                shown_id=prev.id,
                outcome="dismissed",
            )

    def close(self) -> None:
        with self._lock:
            for uri in list(self._open):
                self._dismiss(uri)
        self._pool.shutdown(wait=True)
