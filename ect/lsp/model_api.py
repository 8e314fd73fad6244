"""Adapter to the completion engine in `models/` (torch is imported only when a trained model exists)."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ect.config import Config
    from ect.models.index import SymbolIndex
    from ect.models.team import ModelChoice


log = logging.getLogger(__name__)
_loads = itertools.count(1)  # numbers the models this process loaded (the log names each one)


@dataclass
class Engine:
    completer: Any
    name: str
    lock: threading.Lock
    serial: int = 0  # this process's n-th loaded model


def choose(cfg: Config) -> ModelChoice | None:
    """The model `ect model which` names here: the local fine-tuned one or the newest matching team
    model (asks git); None when the `model` extra is not installed."""
    try:
        from ect.models.settings import model_dir, model_settings
        from ect.models.team import choose_model
    except ImportError:
        return None
    return choose_model(cfg.root, model_dir(cfg), model_settings(cfg))


def trained(cfg: Config) -> bool:
    """Whether a trained model (local or the team's) is there to use (checked without importing torch)."""
    choice = choose(cfg)
    return choice is not None and choice.path is not None


def load(cfg: Config, index: SymbolIndex | None, choice: ModelChoice | None = None) -> Engine:
    """The warm completion engine for `choice` (default: `choose(cfg)`); raises LookupError when no model
    is trained or the extra is missing. The base model alone is not used: the index serves better."""
    choice = choice or choose(cfg)
    if choice is None or choice.path is None:
        raise LookupError("no trained model (run `ect model train`, or publish a team model)")
    try:
        from ect.models.complete import Completer
        from ect.models.modeling import load_trained
        from ect.models.settings import model_settings
    except ImportError as exc:
        raise LookupError(f"the `model` extra is not installed ({exc.name})") from None
    serial = next(_loads)
    log.info("ect: loading code model #%d from %s", serial, choice.path)
    model, tok, meta = load_trained(choice.path)
    completer = Completer(model, tok, index, model_settings(cfg), member_list=False)
    name = str(meta.get("name") or meta.get("base_name") or choice.path.name)
    if choice.name == "team":
        name = f"team {choice.commit[:10]}: {name}"
    return Engine(completer, name, threading.Lock(), serial)


def complete(
    engine: Engine,
    module: str,
    text: str,
    cursor: int,
    stale: Callable[[], bool],
    multiline: bool = False,
    index: SymbolIndex | None = None,
) -> str | None:
    """The best validated completion at `cursor`, or None (also when a newer request made this one stale).

    `index`: the newest symbol index (validates names; it replaces the one the model was loaded with)."""
    with engine.lock:  # one generation at a time; queued requests that went stale give up here
        if stale():
            return None
        if index is not None:
            engine.completer.index = index
        engine.completer.should_stop = stale  # a newer request elsewhere stops this one between tokens
        try:
            result = engine.completer.complete(text, cursor, module=module, k=1, multiline=multiline)
        finally:
            engine.completer.should_stop = _never
    if stale() or not result.candidates:
        return None
    out = result.candidates[0].text
    return out if isinstance(out, str) and out.strip() else None


def _never() -> bool:
    return False
