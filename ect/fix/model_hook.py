"""Candidates from the code model: regenerate the failing line, validated against the symbol index.

Used only when a model is trained (checked without importing torch) and the `model` extra is installed;
otherwise it yields nothing and the index candidates stand alone. In the language server the model is
the one that serves completions (`source`: one copy in memory, replaced for both when it is retrained);
elsewhere one model is loaded per process and replaced when the chosen model's files change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ect.fix.failures import Failure

if TYPE_CHECKING:
    from ect.config import Config
    from ect.fix.candidates import Candidate, FileContext
    from ect.lsp.model_api import Engine
    from ect.models.index import SymbolIndex

log = logging.getLogger(__name__)

ModelSource = Callable[[], "Engine | None"]  # the loaded model to use now (None: none is loaded)

_loaded: dict[str, Any] = {}  # "key": (model folder, its files' mtime), "engine": Engine | None
_lock = threading.Lock()


def _load(cfg: Config, index: SymbolIndex | None) -> Engine | None:
    """This process's model for `cfg` (loaded once; a different or retrained model replaces it)."""
    from ect.lsp import model_api
    from ect.lsp.model_bridge import files_stamp

    choice = model_api.choose(cfg)
    if choice is None or choice.path is None:
        return None
    key = (str(choice.path), files_stamp(choice.path))
    with _lock:
        if _loaded.get("key") != key:
            _loaded.clear()  # the old copy goes before the new one is loaded
            try:
                _loaded["engine"] = model_api.load(cfg, index, choice)
            except Exception as exc:
                log.warning("ect: loading the code model for fixes failed: %s", exc)
                _loaded["engine"] = None
            _loaded["key"] = key
        engine: Engine | None = _loaded["engine"]
        return engine


def regenerate_line(
    cfg: Config,
    root: Path,
    failure: Failure,
    ctx: FileContext,
    index: SymbolIndex | None,
    source: ModelSource | None = None,
) -> list[Candidate]:
    """The failing line as the model writes it (at most one candidate). `source`: the model already
    loaded in this process (the language server's); None: load one here when a model is trained."""
    from ect.fix.candidates import Candidate
    from ect.lsp import model_api

    if failure.kind == "moved":
        return []
    engine = source() if source is not None else _load(cfg, index)
    if engine is None:
        return []
    lines = ctx.source.splitlines(True)
    if not 0 < failure.line <= len(lines):
        return []
    log.info("ect: fix candidate for %s:%d from code model #%d", failure.path, failure.line, engine.serial)
    old = lines[failure.line - 1]
    indent = old[: len(old) - len(old.lstrip())]
    head = "".join(lines[: failure.line - 1]) + indent
    tail = "".join(lines[failure.line :])
    text = model_api.complete(engine, ctx.module, head + "\n" + tail, len(head), lambda: False, index=index)
    if not text:
        return []
    new_line = indent + text.splitlines()[0].rstrip() + "\n"
    if new_line.strip() == old.strip():
        return []
    return [
        Candidate(
            f"Regenerate line {failure.line}: `{new_line.strip()}`",
            ctx.path,
            head[: -len(indent) or None] + new_line + tail,
            25.0,
            "model",
        )
    ]
