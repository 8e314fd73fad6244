"""Adapter to the completion engine in `models/` (torch is imported only when a trained model exists)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ect.config import Config
    from ect.models.index import SymbolIndex


@dataclass
class Engine:
    completer: Any
    name: str
    lock: threading.Lock


def trained(cfg: Config) -> bool:
    """Whether a trained model exists (checked without importing torch)."""
    try:
        from ect.models.modeling import META_FILE
        from ect.models.settings import model_dir
    except ImportError:
        return False
    return (model_dir(cfg) / META_FILE).is_file()


def load(cfg: Config, index: SymbolIndex | None) -> Engine:
    """The warm completion engine; raises LookupError when no model is trained or the extra is missing."""
    if not trained(cfg):
        raise LookupError("no trained model (run `ect model train`)")
    try:
        from ect.models.complete import Completer
        from ect.models.modeling import load_trained
        from ect.models.settings import model_dir, model_settings
    except ImportError as exc:
        raise LookupError(f"the `model` extra is not installed ({exc.name})") from None
    path = model_dir(cfg)
    model, tok, meta = load_trained(path)
    completer = Completer(model, tok, index, model_settings(cfg))
    return Engine(completer, str(meta.get("name") or meta.get("base_name") or path.name), threading.Lock())


def complete(
    engine: Engine, module: str, text: str, cursor: int, stale: Callable[[], bool], multiline: bool = False
) -> str | None:
    """The best validated completion at `cursor`, or None (also when a newer request made this one stale)."""
    with engine.lock:  # one generation at a time; queued requests that went stale give up here
        if stale():
            return None
        result = engine.completer.complete(text, cursor, module=module, k=1, multiline=multiline)
    if stale() or not result.candidates:
        return None
    out = result.candidates[0].text
    return out if isinstance(out, str) and out.strip() else None
