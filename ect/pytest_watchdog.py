"""pytest plugin loaded by ect's runner (`-p ect.pytest_watchdog`): which test is running now.

With `$ECT_PROGRESS` set (a directory), each pytest process (each xdist worker) keeps one
file there holding the node id of the test it is running, or an empty line between tests.
ect reads it to stop a test that runs past `test_timeout` and to name it in the message.
"""

from __future__ import annotations

import os

_dir = os.environ.get("ECT_PROGRESS")
_fd: int | None = None


def _write(text: str) -> None:
    global _fd
    if not _dir:
        return
    try:
        if _fd is None:
            name = os.environ.get("PYTEST_XDIST_WORKER", "main")
            _fd = os.open(os.path.join(_dir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        data = (text + "\n").encode("utf-8", "replace")
        os.ftruncate(_fd, 0)
        os.pwrite(_fd, data, 0)
    except OSError:
        pass  # progress is a convenience: never fail a test run over it


COLLECTING = "<collecting>"


def pytest_collection(session: object) -> None:
    _write(COLLECTING)


def pytest_collection_finish(session: object) -> None:
    _write("")


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _write(nodeid)


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    _write("")
