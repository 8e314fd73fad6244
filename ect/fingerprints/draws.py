"""Which tests draw examples from hypothesis, so that its constants harvest can reach them.

Hypothesis harvests the literals of every local module once per process (`constants`) and
its pytest plugin does so while collection ends, outside any test: a read that, left
alone, is import time, which every test depends on. Only data hypothesis generates can
observe that harvest, so the recorder hands it to the tests that draw instead: the `@given`
tests (`Recorder.harvest_users`) and any other test that generates data (`find()`, a
`@given` function called from a plain test), which `watch` notices by wrapping hypothesis'
`_get_local_constants`, the function every draw that may use a harvested constant calls.
A draw outside a test (a conftest's `.example()`), or a harvest that happened before the
watch began, keeps the import-time rule. Hypothesis draws a harvested constant of the type it is
generating only (an integer for `st.integers()`): where the draw is seen by kind, the test depends
on the harvested constants of those kinds alone (`constants.KINDS`); any other read of the
harvest counts as every kind.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable
from typing import Any

PROVIDERS = "hypothesis.internal.conjecture.providers"
_PREFETCH = "_hypothesis_pytestplugin.py"  # the plugin's own harvest after collection: not a draw
_MARK = "_ect_watched"


def watch(
    on_draw: Callable[[], None],
    on_unwatched: Callable[[], None],
    on_kind: Callable[[str | None], None] | None = None,
) -> bool:
    """Wrap hypothesis' harvest accessor (once, if hypothesis' providers are loaded) so that
    every draw calls `on_draw`; `on_unwatched` when a harvest already happened unseen; and,
    where hypothesis draws a constant through `HypothesisProvider._maybe_draw_constant`, tell
    `on_kind` the choice type ("integer", "string", ...) it may draw. Whether draws are known by
    kind (the provider's method is wrapped)."""
    module = sys.modules.get(PROVIDERS)
    if module is None and "hypothesis" in sys.modules:  # it loads its providers at the first draw:
        try:  # load them now, so that the first test's draws are seen too
            module = importlib.import_module(PROVIDERS)
        except Exception:
            module = None
    typed = on_kind is not None and _watch_kinds(module, on_kind)
    accessor = getattr(module, "_get_local_constants", None)
    if accessor is None or getattr(accessor, _MARK, False):
        return typed
    if getattr(module, "_sys_modules_len", None) is not None:
        on_unwatched()  # harvested before the watch: what drew then is unknown

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            caller = sys._getframe(1)
            if not caller.f_code.co_filename.endswith(_PREFETCH):
                on_draw()
                if on_kind is not None and not _in_typed_draw(caller):
                    on_kind(None)  # a use of the harvest other than a typed draw: every kind
        except Exception:
            on_unwatched()
        return accessor(*args, **kwargs)

    setattr(watched, _MARK, True)
    module._get_local_constants = watched  # type: ignore[union-attr]
    return typed


def _in_typed_draw(frame: Any) -> bool:
    """Whether the harvest is read on behalf of `_maybe_draw_constant` (within a few frames)."""
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_code.co_name == "_maybe_draw_constant":
            return True
        frame = frame.f_back
    return False


def _watch_kinds(module: Any, on_kind: Callable[[str | None], None]) -> bool:
    provider = getattr(module, "HypothesisProvider", None)
    method = getattr(provider, "_maybe_draw_constant", None)
    if method is None:
        return False
    if getattr(method, _MARK, False):
        return True

    def typed(self: Any, choice_type: Any, *args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(Exception):
            on_kind(choice_type if isinstance(choice_type, str) else None)
        return method(self, choice_type, *args, **kwargs)

    setattr(typed, _MARK, True)
    provider._maybe_draw_constant = typed  # type: ignore[union-attr]
    return True
