"""The symbol index for the editor, rebuilt off the request path.

Each rebuild is bounded first (changed files over `FAST_BYTES` keep their old entry, so completions get
a fresh index quickly even next to a huge file), then completed without the limit; requests that come
in meanwhile are merged into one more rebuild, and a stopped indexer starts nothing new.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ect.fix.engine import FixEngine

log = logging.getLogger(__name__)

FAST_BYTES = 64 * 1024  # ~1.5k lines of Python: larger changed files wait for the full build


class Indexer:
    """One background thread that keeps `engine.current_index` up to date."""

    def __init__(self, engine: FixEngine, on_built: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.on_built = on_built
        self.first = threading.Event()  # a (possibly bounded) index exists
        self.builds: list[tuple[str, float]] = []  # ('fast' | 'full', seconds), the latest few
        self._wanted = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="ect-index", daemon=True)

    def start(self) -> None:
        self._wanted.set()
        self._thread.start()

    def request(self) -> None:
        """Rebuild soon (a file was saved)."""
        self._wanted.set()

    def stop(self) -> None:
        self._stopped = True
        self._wanted.set()

    def _build(self, kind: str, limit: int | None) -> None:
        started = time.perf_counter()
        try:
            self.engine.refresh_index(max_file_bytes=limit)
        except Exception as exc:  # a broken file must not end the indexer
            log.warning("ect: indexing failed: %s", exc)
            return
        finally:
            self.first.set()
        self.builds = [*self.builds[-9:], (kind, time.perf_counter() - started)]
        if self.on_built is not None:
            self.on_built()

    def _work(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopped:
                return
            self._wanted.clear()
            self._build("fast", FAST_BYTES)
            if self._stopped:
                return
            if self._wanted.is_set():
                continue  # a newer save: start over with the fast build
            self._build("full", None)
