"""pytest plugin loaded by ect's runner (`-p ect.pytest_plugin`).

Writes each test's outcome to the JSON file named by `$ECT_RESULTS`, so the loop
knows which tests failed (they are selected again next time) without parsing output.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_results: dict[str, Any] = {"rootpath": "", "tests": {}, "collect_errors": []}


def pytest_sessionstart(session: pytest.Session) -> None:
    _results["rootpath"] = str(session.config.rootpath)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _results["collect_errors"].append(report.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tests: dict[str, dict[str, Any]] = _results["tests"]
    entry = tests.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
    entry["duration"] += report.duration
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] == "passed" and report.when in ("setup", "call"):
        entry["outcome"] = "skipped"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("ECT_RESULTS")
    if not path or hasattr(session.config, "workerinput"):  # xdist workers report through the controller
        return
    _results["exitstatus"] = int(exitstatus)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_results, fh)
    os.replace(tmp, path)
