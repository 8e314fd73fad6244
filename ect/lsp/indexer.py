"""The symbol index for the editor, rebuilt off the request path.

Each rebuild is bounded first (changed files over `FAST_BYTES` keep their old entry, so completions get
a fresh index quickly even next to a huge file), then completed without the limit; requests that come
in meanwhile are merged into one more rebuild, and a stopped indexer starts nothing new. The complete
build parses in a child process at low priority (libcst holds the GIL for seconds on a big file: in this
process it slowed every completion and the next save's diagnostics), which fills the index cache that the
build here then reads.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from ect.fix.engine import FixEngine

log = logging.getLogger(__name__)

FAST_BYTES = 64 * 1024  # ~1.5k lines of Python: larger changed files wait for the full build
CHILD_TIMEOUT_S = 600.0  # a complete build in the child that takes longer is stopped
CHILD_BUILD = (
    "import os, sys; os.nice(10); from pathlib import Path; from ect.models.index import SymbolIndex; "
    "SymbolIndex.build(Path(sys.argv[1]), Path(sys.argv[2]))"
)


class Indexer:
    """One background thread that keeps `engine.current_index` up to date."""

    def __init__(self, engine: FixEngine, on_built: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.on_built = on_built
        self.first = threading.Event()  # a (possibly bounded) index exists
        self.builds: list[tuple[str, float]] = []  # ('fast' | 'full', seconds), the latest few
        self._wanted = threading.Event()
        self._stopped = False
        self._child: subprocess.Popen[bytes] | None = None
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
        child = self._child
        if child is not None:
            from ect.runner import end_group

            end_group(child, grace=1.0)

    def _parse_in_child(self) -> None:
        """Fill the index cache from a child process (the parsing there holds no lock of ours)."""
        from ect.runner import end_group, start_in_group

        cmd = [sys.executable, "-c", CHILD_BUILD, str(self.engine.root), str(self.engine.cfg.state_path)]
        try:
            child = start_in_group(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError as exc:
            log.warning("ect: cannot index in a child process: %s", exc)
            return
        self._child = child
        try:
            if not self._stopped:
                child.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("ect: indexing took longer than %g s: stopped", CHILD_TIMEOUT_S)
        finally:
            end_group(child, grace=1.0)
            self._child = None

    def _build(self, kind: str, limit: int | None) -> None:
        started = time.perf_counter()
        try:
            if limit is None:
                self._parse_in_child()
                if self._stopped:
                    return
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
