"""pytest plugin used by the fix engine: records each failure's exception and traceback frames.

Writes `$ECT_RESULTS.fix.json` (next to the runner's results file): a list of
`{nodeid, exc_type, message, name, owner, choices, frames: [[path, line], ...], lines: [...]}`.
`lines` are the lines of `$ECT_TRACE_FILE` (one source file, when set) that the failing test ran.
While a test runs, its node id is in `$ECT_RESULTS.current` (what a timeout reports).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import types
from collections.abc import Generator
from typing import Any

import pytest

_failures: list[dict[str, Any]] = []
_traced: dict[str, set[int]] = {}  # nodeid -> lines of the traced file it ran
_MAX_TRACED_LINES = 5000


def _root_cause(exc: BaseException) -> BaseException:
    """The exception a pytest collection error wraps (e.g. the ImportError under CollectError)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__cause__ or exc.__context__
        if inner is None or isinstance(exc, (NameError, AttributeError, ImportError, TypeError)):
            break
        exc = inner
    return exc


def _owner(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(exc: BaseException, nodeid: str) -> dict[str, Any]:
    """The JSON-able facts about one exception."""
    exc = _root_cause(exc)
    frames: list[list[Any]] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append([tb.tb_frame.f_code.co_filename, tb.tb_lineno])
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append([exc.filename, exc.lineno or 1])
    info: dict[str, Any] = {
        "nodeid": nodeid,
        "exc_type": type(exc).__name__,
        "message": str(exc),
        "name": getattr(exc, "name", None)
        if isinstance(exc, (NameError, AttributeError, ImportError))
        else None,
        "owner": None,
        "choices": [],
        "frames": frames,
    }
    if isinstance(exc, AttributeError) and getattr(exc, "obj", None) is not None:
        obj = exc.obj
        info["owner"] = _owner(obj)
        try:
            info["choices"] = [n for n in dir(obj) if not (n.startswith("__") and n.endswith("__"))][:500]
        except Exception:
            info["choices"] = []
    return info


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    path = os.environ.get("ECT_RESULTS")
    if path:
        with contextlib.suppress(OSError), open(f"{path}.current", "w", encoding="utf-8") as fh:
            fh.write(nodeid)


def _line_tracer(target: str, lines: set[int]) -> Any:
    def local(frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "line" and len(lines) < _MAX_TRACED_LINES:
            lines.add(frame.f_lineno)
        return local

    def global_(frame: types.FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == target:
            lines.add(frame.f_lineno)
            return local
        return None

    return global_


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    target = os.environ.get("ECT_TRACE_FILE")
    if not target or sys.gettrace() is not None:  # never fight a debugger or coverage
        return (yield)
    lines = _traced.setdefault(item.nodeid, set())
    sys.settrace(_line_tracer(os.path.realpath(target), lines))
    try:
        return (yield)
    finally:
        sys.settrace(None)


def pytest_exception_interact(
    node: pytest.Item | pytest.Collector,
    call: pytest.CallInfo[Any],
    report: pytest.TestReport | pytest.CollectReport,
) -> None:
    if call.excinfo is None:
        return
    with contextlib.suppress(Exception):
        info = describe(call.excinfo.value, node.nodeid)
        info["lines"] = sorted(_traced.get(node.nodeid, ()))
        _failures.append(info)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("ECT_RESULTS")
    if not path or hasattr(session.config, "workerinput"):
        return
    tmp = f"{path}.fix.json.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_failures, fh)
    os.replace(tmp, f"{path}.fix.json")
