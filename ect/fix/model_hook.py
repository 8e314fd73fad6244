"""Candidates from the code model: regenerate the failing line, validated against the symbol index.

Used only when a model is trained (checked without importing torch) and the `model` extra is installed;
otherwise it yields nothing and the index candidates stand alone. The model is loaded once per process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ect.fix.failures import Failure

if TYPE_CHECKING:
    from ect.config import Config
    from ect.fix.candidates import Candidate, FileContext
    from ect.models.index import SymbolIndex

_engine: dict[str, Any] = {}
_lock = threading.Lock()


def _load(cfg: Config, index: SymbolIndex | None) -> Any:
    from ect.lsp import model_api

    key = str(cfg.root)
    with _lock:
        if key not in _engine:
            try:
                _engine[key] = model_api.load(cfg, index)
            except Exception:
                _engine[key] = None
        return _engine[key]


def regenerate_line(
    cfg: Config, root: Path, failure: Failure, ctx: FileContext, index: SymbolIndex | None
) -> list[Candidate]:
    from ect.fix.candidates import Candidate
    from ect.lsp import model_api

    if failure.kind == "moved" or not model_api.trained(cfg):
        return []
    engine = _load(cfg, index)
    if engine is None:
        return []
    lines = ctx.source.splitlines(True)
    if not 0 < failure.line <= len(lines):
        return []
    old = lines[failure.line - 1]
    indent = old[: len(old) - len(old.lstrip())]
    head = "".join(lines[: failure.line - 1]) + indent
    tail = "".join(lines[failure.line :])
    text = model_api.complete(engine, ctx.module, head + "\n" + tail, len(head), lambda: False)
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
