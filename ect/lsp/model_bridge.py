"""The code model behind completions, loaded in the background, reloaded when it is retrained.

Absent when the `model` extra is not installed or no model has been trained: completions then come from
the symbol index alone. Completion lists never wait for it: `request` computes a suggestion in a worker
(newest request wins) and `suggestion` returns one computed earlier that still fits what is typed.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ect.config import Config
    from ect.lsp.model_api import Engine
    from ect.models.index import SymbolIndex

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0  # how often a request may look for a new model on disk
RETRY_AFTER_S = 30.0  # a failed load is retried this long after (or as soon as the files change)
WINDOW_BEFORE = 16_000  # characters of a big document before the cursor that the model sees
WINDOW_AFTER = 2_000
HEAD_CHARS = 4_000  # and of its head (imports)
MAX_KEPT = 64  # suggestions kept (the latest per document line)


@dataclass
class Suggestion:
    """What the model proposed at the end of `head` (the line up to the cursor) in `uri`, line `line`."""

    uri: str
    line: int
    head: str
    text: str | None  # None: the model had nothing valid there


def window(text: str, cursor: int) -> tuple[str, int]:
    """A bounded part of `text` around `cursor` (the head kept for imports) and the cursor in it."""
    if len(text) <= WINDOW_BEFORE + WINDOW_AFTER + HEAD_CHARS:
        return text, cursor
    start = text.rfind("\n", 0, max(0, cursor - WINDOW_BEFORE)) + 1
    head = text[: text.rfind("\n", 0, HEAD_CHARS) + 1] if start > HEAD_CHARS else ""
    end = text.find("\n", min(len(text), cursor + WINDOW_AFTER))
    end = len(text) if end < 0 else end
    return head + text[start:end], len(head) + cursor - start


class ModelBridge:
    """The warm model (or None) and the suggestions it computed off the request path."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.engine: Engine | None = None
        self.name = "index"
        self.error: str | None = None
        self.enabled = False
        self._index: SymbolIndex | None = None
        self._loading = False
        self._loaded_stamp: float | None = None  # mtime of the model files that were loaded (or failed)
        self._failed_at = 0.0
        self._checked = 0.0
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._wanted: tuple[int, str, str, int, str, int, str] | None = None
        self._seq = 0
        self._last: dict[tuple[str, int], Suggestion] = {}  # (uri, line) -> the latest there
        self._worker: threading.Thread | None = None
        self._closed = False

    # -- loading
    def stamp(self) -> float | None:
        """The newest mtime of the trained model's files (None: no model)."""
        try:
            from ect.models.modeling import META_FILE
            from ect.models.settings import model_dir
        except ImportError:
            return None
        folder = Path(model_dir(self.cfg))
        try:
            meta = (folder / META_FILE).stat().st_mtime
            return max([meta, *(e.stat().st_mtime for e in os.scandir(folder) if e.is_file())])
        except OSError:
            return None

    def warm(self, index: SymbolIndex | None) -> None:
        """Enable the model and load it in the background when one is trained."""
        self.enabled = True
        self._index = index
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Load a new or retrained model (in the background) if the files changed; cheap to call often."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self._checked < CHECK_EVERY_S):
            return
        self._checked = now
        stamp = self.stamp()
        with self._lock:
            retry = self.error is not None and now - self._failed_at >= RETRY_AFTER_S
            if self._loading or stamp is None or (stamp == self._loaded_stamp and not retry):
                return
            self._loading = True
        threading.Thread(target=self._load, args=(stamp,), name="ect-model-load", daemon=True).start()

    def _load(self, stamp: float) -> None:
        from ect.lsp import model_api

        try:
            engine = model_api.load(self.cfg, self._index)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._failed_at = time.monotonic()
            log.warning("ect: loading the code model failed (retrying in %gs): %s", RETRY_AFTER_S, self.error)
        else:
            self.engine, self.name, self.error = engine, engine.name, None
            self._last.clear()
            log.info("ect: code model %s loaded", engine.name)
        finally:
            self._loaded_stamp = stamp
            self._loading = False

    # -- suggestions
    def suggestion(self, uri: str, line: int, head: str) -> Suggestion | None:
        """A suggestion computed at an earlier point of the same line that the typing since agrees with
        (its text shortened by what was typed); None when there is none."""
        s = self._last.get((uri, line))
        if s is None or not head.startswith(s.head):
            return None
        typed = head[len(s.head) :]
        if s.text is None:
            return s if not typed else None
        if not s.text.startswith(typed) or len(typed) >= len(s.text):
            return None
        return Suggestion(uri, line, head, s.text[len(typed) :])

    def request(self, uri: str, module: str, text: str, cursor: int, line: int, head: str) -> bool:
        """Compute a suggestion at `cursor` in the background (replacing any queued request); False when
        there is no model."""
        if self.engine is None or self._closed:
            return False
        with self._cond:
            self._seq += 1
            self._wanted = (self._seq, uri, module, cursor, text, line, head)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="ect-model", daemon=True)
                self._worker.start()
            self._cond.notify()
        return True

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._wanted is None and not self._closed:
                    self._cond.wait()
                if self._closed or self._wanted is None:
                    return
                seq, uri, module, cursor, text, line, head = self._wanted
                self._wanted = None
            try:
                out = self.complete(module, text, cursor, functools.partial(self._stale, seq))
            except Exception as exc:  # a model error must not end the worker
                log.warning("ect: model completion failed: %s", exc)
                out = None
            if self._seq == seq:
                self._last[(uri, line)] = Suggestion(uri, line, head, out)
                while len(self._last) > MAX_KEPT:
                    self._last.pop(next(iter(self._last)))

    def _stale(self, seq: int) -> bool:
        return self._seq != seq

    def complete(self, module: str, text: str, cursor: int, stale: Callable[[], bool]) -> str | None:
        """A validated completion at `cursor` (code points), or None (no model, stale, nothing valid)."""
        engine = self.engine
        if engine is None:
            return None
        from ect.lsp import model_api

        part, at = window(text, cursor)
        return model_api.complete(engine, module, part, at, stale)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
