"""The code model behind completions, loaded lazily once and kept warm.

Absent when the `model` extra is not installed or no model has been trained: completions then come from
the symbol index alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ect.config import Config
    from ect.lsp.model_api import Engine
    from ect.models.index import SymbolIndex


class ModelBridge:
    """Loads the completion engine in the background on first use; `complete` returns None until ready."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.engine: Engine | None = None
        self.name = "index"
        self.error: str | None = None
        self._loading = False
        self._lock = threading.Lock()

    def warm(self, index: SymbolIndex | None) -> None:
        with self._lock:
            if self._loading or self.engine is not None:
                return
            self._loading = True
        threading.Thread(target=self._load, args=(index,), name="ect-model-load", daemon=True).start()

    def _load(self, index: SymbolIndex | None) -> None:
        from ect.lsp import model_api

        try:
            self.engine = model_api.load(self.cfg, index)
            self.name = self.engine.name
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.engine = None

    def complete(self, module: str, text: str, cursor: int, stale: Callable[[], bool]) -> str | None:
        """A validated completion at `cursor`, or None (no model, stale request, nothing valid)."""
        if self.engine is None:
            return None
        from ect.lsp import model_api

        return model_api.complete(self.engine, module, text, cursor, stale)
