"""pytest plugin loaded by ect's runner (`-p ect.pytest_plugin`).

Writes each test's outcome to the JSON file named by `$ECT_RESULTS`, so the loop
knows which tests failed (they are selected again next time) without parsing output.
With `$ECT_FP_OUT` set it also records per-test fingerprints (`ect.fingerprints.recorder`);
tracing starts when this plugin is imported (in a warm process that imported it earlier, when
pytest starts loading conftests), before conftests and test modules load.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Generator
from typing import Any

import pytest

from ect.fingerprints import draws
from ect.fingerprints.memo import HITS
from ect.fingerprints.recorder import COLLECT, IMPORT_TIME, Recorder, fixture_key, start_from_env
from ect.fingerprints.statements import cached_narrowed_statements, trace_module_import, untraced
from ect.pytest_nodeids import pytest_collection_modifyitems, pytest_configure  # noqa: F401 (hooks)

_results: dict[str, Any] = {"rootpath": "", "tests": {}, "collect_errors": []}


def _ready_pipe() -> tuple[int, int, int] | None:
    """(fd, device, inode) of the pipe ect passed (`$ECT_READY_FD`), if it is one."""
    fd = os.environ.pop("ECT_READY_FD", "")
    try:
        info = os.fstat(int(fd))
    except (ValueError, OSError):
        return None
    return (int(fd), info.st_dev, info.st_ino) if stat.S_ISFIFO(info.st_mode) else None


# a pipe to ect (`ect.runner`): one byte once the results are written, so that ect stores the
# recording while pytest is still exiting. For this process only: not for xdist workers or tests.
_READY = _ready_pipe()

_recorder: Recorder | None = None


def _untrace_rewrites() -> None:
    """Keep pytest's assertion rewriting out of the test-module import tracer (`untraced`)."""
    try:
        from _pytest.assertion import rewrite
    except ImportError:
        return
    original = getattr(rewrite, "_rewrite_test", None)
    if callable(original) and not getattr(original, "ect_untraced", False):
        rewrite._rewrite_test = untraced(original)


def _start_recording() -> None:
    global _recorder
    if _recorder is None and os.environ.get("ECT_FP_OUT"):
        _recorder = start_from_env()
        if _recorder is not None:
            _untrace_rewrites()


_start_recording()  # as early as possible: before conftests and test modules load


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: Any, args: list[str]) -> None:
    # a warm process imported this plugin before the run's environment was set: start here, still
    # before the first conftest is imported
    _start_recording()


def _shared_fixtures(defs: Any) -> list[str]:
    """`f:` keys of the wider-than-function fixture definitions in `defs`."""
    out = []
    for fixturedef in defs:
        scope = getattr(fixturedef, "scope", "function")
        if scope != "function":
            out.append(fixture_key(scope, str(getattr(fixturedef, "baseid", "")), fixturedef.argname))
    return out


def _static_fixtures(item: pytest.Item) -> list[str]:
    """The shared fixtures `item` requests, directly or through other fixtures (autouse included)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    # every definition of a name counts: an overriding fixture may request the one it overrides
    names = getattr(item, "fixturenames", ())
    return _shared_fixtures(d for name in names for d in info.name2fixturedefs.get(name, ()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    if _recorder is not None:
        try:
            fixtures = _static_fixtures(item)
        except Exception:  # unknown pytest internals: the fixtures' code stays global (more tests)
            fixtures = []
        _recorder.start_test(item.nodeid, fixtures)
        _watch_draws()
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False) is True:
            _recorder.harvest_users.add(item.nodeid)
    yield
    if _recorder is not None:
        _recorder.switch(IMPORT_TIME)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    if _recorder is not None:  # fixtures the test asked for by name (`request.getfixturevalue`)
        try:
            defs = getattr(getattr(item, "_request", None), "_fixture_defs", {})
            _recorder.used_fixtures(item.nodeid, _shared_fixtures(defs.values()))
        except Exception:
            pass
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Generator[None, None, None]:
    # a fixture shared by several tests runs once: what it executes belongs to all the tests using it
    keys = _shared_fixtures([fixturedef]) if _recorder is not None else []
    if _recorder is None or not keys:
        yield
        return
    test = _recorder.context
    if test and not test.startswith(COLLECT):
        _recorder.used_fixtures(test, keys)  # set up for this test, whether it names it or not
    previous = _recorder.switch(keys[0])
    try:
        yield
    finally:
        _recorder.switch(previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, None, None]:
    # importing a test module, its module level, conftests of a directory, parametrisation:
    # observed by the tests under this collector
    if _recorder is None or isinstance(collector, pytest.Session) or collector.nodeid in ("", "."):
        yield
        return
    previous = _recorder.switch(COLLECT + collector.nodeid)
    stop = None
    if type(collector) is pytest.Module:  # a plain test module (not a doctest module, not a plugin's)
        try:  # a parametrize decorator's code reaches its own test only (`statements`)
            path = str(collector.path)
            spans = cached_narrowed_statements(path, os.environ.get("ECT_FP_CODE_CACHE"))
            stop = trace_module_import(path, spans, COLLECT + collector.nodeid, _recorder.switch, HITS)
        except Exception:  # unknown pytest internals: the module's tests get it all, as before
            stop = None
    try:
        yield
    finally:
        if stop is not None:
            stop()
        _recorder.switch(previous)
        _watch_draws()  # the module may have loaded hypothesis


def pytest_sessionstart(session: pytest.Session) -> None:
    _results["rootpath"] = str(session.config.rootpath)
    _watch_draws()


def _watch_draws() -> None:
    """Once hypothesis is loaded, note which tests draw examples (`draws`)."""
    if _recorder is not None and draws.watch(
        _recorder.note_draw, _recorder.note_unwatched_draw, _recorder.note_draw_kind
    ):
        _recorder.typed_draws = True


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _results["collect_errors"].append(report.nodeid)
    elif _recorder is not None and report.nodeid.endswith(".py") and "::" not in report.nodeid:
        _recorder.collected.add(report.nodeid)  # a test module (collected, or skipped as a whole)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tests: dict[str, dict[str, Any]] = _results["tests"]
    entry = tests.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
    entry["duration"] += report.duration
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] == "passed" and report.when in ("setup", "call"):
        entry["outcome"] = "skipped"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _recorder is not None:
        try:
            _recorder.finish()
        except Exception as exc:  # never fail the run because recording failed
            print(f"ect: fingerprints not recorded: {type(exc).__name__}: {exc}")
    path = os.environ.get("ECT_RESULTS")
    if not path or hasattr(session.config, "workerinput"):  # xdist workers report through the controller
        return
    _results["exitstatus"] = int(exitstatus)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(_results))  # one-shot: the C encoder (`dump` streams in Python)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk must not turn a passing run into a failing one
        print(f"ect: test results not saved ({exc.strerror}): tests that failed are not re-run next time")
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _signal_ready()


def _signal_ready() -> None:
    global _READY
    ready, _READY = _READY, None
    if ready is None:
        return
    fd, device, inode = ready
    with contextlib.suppress(OSError):
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) == (device, inode):  # still ect's pipe (a test may have closed it)
            os.write(fd, b"1")
            os.close(fd)
