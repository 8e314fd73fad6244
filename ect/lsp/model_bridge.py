"""The code model behind completions, loaded in the background, reloaded when it is retrained.

Absent when the `model` extra is not installed or no model has been trained: completions then come from
the symbol index alone. Completion lists never wait for it: `request` computes a suggestion in a worker
and `suggestion` returns one computed earlier that still fits what is typed, so the client's next request
(it asks again as the user types while the list is incomplete) shows it. A request that continues the
typing at the point being computed lets that computation finish (its result still applies); a request
elsewhere cancels it; only the newest request waits.
"""

from __future__ import annotations

import contextlib
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
RANK_LIMIT = 48  # member names the model ranks per request (the index lists them all anyway)
WARM_UP = "def double(x):\n    return "  # generated once after loading


def files_stamp(folder: Path) -> float | None:
    """The newest mtime of a folder and the files in it (None: no such folder)."""
    try:
        return max([folder.stat().st_mtime, *(e.stat().st_mtime for e in os.scandir(folder) if e.is_file())])
    except OSError:
        return None


def head_fingerprint(root: Path) -> tuple[str, ...]:
    """What HEAD points at, read from the files under .git (no git process): the symbolic ref and the
    commit it names (loose ref or packed-refs). Changes with every commit, checkout and reset."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree or submodule: `gitdir: <path>`
            text = git.read_text(encoding="utf-8", errors="replace")[:4096].strip()
            git = (root / text.removeprefix("gitdir:").strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8", errors="replace")[:4096].strip()
    except OSError:
        return ("",)
    if not head.startswith("ref:"):
        return (head,)  # detached: the commit itself
    ref = head[4:].strip()
    common = git
    with contextlib.suppress(OSError):
        common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for base in dict.fromkeys((git, common)):
        with contextlib.suppress(OSError):
            return (head, (base / ref).read_text(encoding="utf-8", errors="replace")[:4096].strip())
    try:
        packed = (common / "packed-refs").stat()
        return (head, f"packed {packed.st_mtime_ns} {packed.st_size}")
    except OSError:
        return (head,)


def _one_thread() -> None:
    """Generate on one thread: on a busy machine two threads are slower than one (they wait on each
    other), and a core stays free for the index and the tests."""
    import torch

    torch.set_num_threads(1)


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

    def __init__(self, cfg: Config, index_source: Callable[[], SymbolIndex | None] | None = None) -> None:
        self.cfg = cfg
        self._index_source = index_source  # the newest symbol index (names are validated against it)
        self.engine: Engine | None = None
        self.name = "index"
        self.error: str | None = None
        self.enabled = False
        self._index: SymbolIndex | None = None
        self._loading = False
        self._loaded_stamp: tuple[object, ...] | None = None  # stamp() when the model was last chosen
        self._model: tuple[str, float | None] | None = None  # the loaded model's folder and files' mtime
        self._failed_at = 0.0
        self._checked = 0.0
        self._checking = False  # a check runs in the background
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._wanted: tuple[str, str, int, str, int, str] | None = None
        self._epoch = 0  # bumped by a request that makes the computation in flight useless
        self._running: tuple[str, int, str] | None = None  # (uri, line, head) being computed
        self._last: dict[tuple[str, int], Suggestion] = {}  # (uri, line) -> the latest there
        self._worker: threading.Thread | None = None
        self._closed = False

    # -- loading
    def stamp(self) -> tuple[object, ...] | None:
        """What decides which model to use, read without running git (polled every CHECK_EVERY_S): where
        HEAD is, the local model's files, the team directory's entries. None: the extra is missing."""
        try:
            from ect.models.settings import model_dir, model_settings
            from ect.models.team import team_dir
        except ImportError:
            return None
        team = team_dir(self.cfg.root, model_settings(self.cfg))
        return (head_fingerprint(self.cfg.root), files_stamp(model_dir(self.cfg)), team and files_stamp(team))

    def warm(self, index: SymbolIndex | None) -> None:
        """Enable the model and load it in the background when one is trained."""
        self.enabled = True
        self._index = index
        self.refresh(force=True)

    def index(self) -> SymbolIndex | None:
        """The newest symbol index (else the one given to `warm`)."""
        current = self._index_source() if self._index_source is not None else None
        return current if current is not None else self._index

    def shared(self) -> Engine | None:
        """The loaded model for another user in this process (the fix engine): the very copy that serves
        completions, so there is one in memory, and a retrained one replaces it for both. None while
        none is loaded (a load is started when the files changed)."""
        self.refresh()
        return self.engine if not self._closed else None

    def refresh(self, force: bool = False) -> None:
        """Load a new or retrained model (in the background) if the files changed; cheap to call often:
        the check itself (reading .git and the model folders) runs in a thread, not on the request path,
        except when `force`d."""
        now = time.monotonic()
        if not self.enabled or (not force and (now - self._checked < CHECK_EVERY_S or self._checking)):
            return
        self._checked = now
        if force:
            self._check(now)
            return
        self._checking = True
        threading.Thread(target=self._check, args=(now,), name="ect-model-check", daemon=True).start()

    def _check(self, now: float) -> None:
        try:
            stamp = self.stamp()
        finally:
            self._checking = False
        with self._lock:
            retry = self.error is not None and now - self._failed_at >= RETRY_AFTER_S
            if self._loading or stamp is None or (stamp == self._loaded_stamp and not retry):
                return
            self._loading = True
        threading.Thread(target=self._load, args=(stamp,), name="ect-model-load", daemon=True).start()

    def _load(self, stamp: tuple[object, ...]) -> None:
        from ect.lsp import model_api

        try:
            choice = model_api.choose(self.cfg)  # git runs here, only after something changed
            if choice is None or choice.path is None:
                if self.engine is not None:
                    log.info("ect: no model matches this code now (%s): index completions only", choice)
                self.engine, self.name, self.error, self._model = None, "index", None, None
                return
            model = (str(choice.path), files_stamp(choice.path))
            if self.engine is not None and model == self._model:
                return  # HEAD moved, the same model still fits
            # the old copy goes first: one model in memory
            self.engine, self.name, self._model = None, "index", None
            self._last.clear()
            engine = model_api.load(self.cfg, self.index(), choice)
            engine.completer.rank_limit = RANK_LIMIT
            _one_thread()
            # one short generation first: the first real request does not pay for torch's warm-up
            model_api.complete(engine, "warm", WARM_UP, len(WARM_UP), lambda: self._closed)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._failed_at = time.monotonic()
            log.warning("ect: loading the code model failed (retrying in %gs): %s", RETRY_AFTER_S, self.error)
        else:
            self.engine, self.name, self.error, self._model = engine, engine.name, None, model
            self._last.clear()
            log.info("ect: code model %s loaded from %s", engine.name, choice.path)
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

    @property
    def pending(self) -> bool:
        """Whether a model is being loaded (a client that asks again soon may get its items)."""
        return self.enabled and self._loading and not self._closed

    def request(self, uri: str, module: str, text: str, cursor: int, line: int, head: str) -> bool:
        """Compute a suggestion at `cursor` in the background (replacing any queued request); False when
        there is no model."""
        if self.engine is None or self._closed:
            return False
        with self._cond:
            run = self._running
            if run is None or run[:2] != (uri, line) or not head.startswith(run[2]):
                self._epoch += 1  # the computation in flight cannot answer this one: stop it
            self._wanted = (uri, module, cursor, text, line, head)
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
                uri, module, cursor, text, line, head = self._wanted
                self._wanted = None
                if self.suggestion(uri, line, head) is not None:
                    continue  # the computation that just finished answers it
                epoch = self._epoch
                self._running = (uri, line, head)
            try:
                out = self.complete(module, text, cursor, functools.partial(self._stale, epoch))
            except Exception as exc:  # a model error must not end the worker
                log.warning("ect: model completion failed: %s", exc)
                out = None
            log.debug("ect: model at %r (line %d): %r (current: %s)", head, line, out, self._epoch == epoch)
            with self._cond:
                self._running = None
                if self._epoch == epoch:
                    self._last.pop((uri, line), None)  # newest last: the oldest are dropped first
                    self._last[(uri, line)] = Suggestion(uri, line, head, out)
                    while len(self._last) > MAX_KEPT:
                        self._last.pop(next(iter(self._last)))

    def _stale(self, epoch: int) -> bool:
        return self._epoch != epoch

    def complete(self, module: str, text: str, cursor: int, stale: Callable[[], bool]) -> str | None:
        """A validated completion at `cursor` (code points), or None (no model, stale, nothing valid)."""
        engine = self.engine
        if engine is None:
            return None
        from ect.lsp import model_api

        part, at = window(text, cursor)
        return model_api.complete(engine, module, part, at, stale, index=self.index())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
