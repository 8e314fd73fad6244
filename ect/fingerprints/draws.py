"""Which tests draw examples from hypothesis, so that its constants harvest can reach them.

Hypothesis harvests the literals of every local module once per process (`constants`) and
its pytest plugin does so while collection ends, outside any test: a read that, left
alone, is import time, which every test depends on. Only data hypothesis generates can
observe that harvest, so the recorder hands it to the tests that draw instead: the `@given`
tests (`Recorder.harvest_users`) and any other test that generates data (`find()`, a
`@given` function called from a plain test), which `watch` notices by wrapping hypothesis'
`_get_local_constants`, the function every draw that may use a harvested constant calls.
A draw outside a test (a conftest's `.example()`), or a harvest that happened before the
watch began, keeps the import-time rule.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

PROVIDERS = "hypothesis.internal.conjecture.providers"
_PREFETCH = "_hypothesis_pytestplugin.py"  # the plugin's own harvest after collection: not a draw
_MARK = "_ect_watched"


def watch(on_draw: Callable[[], None], on_unwatched: Callable[[], None]) -> None:
    """Wrap hypothesis' harvest accessor (once, if hypothesis' providers are loaded) so that
    every draw calls `on_draw`; `on_unwatched` when a harvest already happened unseen."""
    module = sys.modules.get(PROVIDERS)
    accessor = getattr(module, "_get_local_constants", None)
    if accessor is None or getattr(accessor, _MARK, False):
        return
    if getattr(module, "_sys_modules_len", None) is not None:
        on_unwatched()  # harvested before the watch: what drew then is unknown

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            if not sys._getframe(1).f_code.co_filename.endswith(_PREFETCH):
                on_draw()
        except Exception:
            on_unwatched()
        return accessor(*args, **kwargs)

    setattr(watched, _MARK, True)
    module._get_local_constants = watched  # type: ignore[union-attr]
