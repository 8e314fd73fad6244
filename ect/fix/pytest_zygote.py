"""A warm pytest process that forks a child per run (`python -m ect.fix.pytest_zygote`).

Importing pytest and the installed plugins costs most of a small test run; this process pays it once.
Protocol, one JSON object per line: request `{"args": [...], "cwd": ..., "env": {...}, "path": [...]}`,
answers `{"pid": N}` when the child starts and `{"pid": N, "exit": code}` when it ends. The child runs
`pytest.main(args)` in `cwd` with `env` applied and `path` put first on `sys.path`. The project's own
modules are never imported here, so each child sees the code as it is on disk.

Nothing outlives the server: this process exits (killing the running child's process group) as soon as
its parent dies or closes stdin, and each child is killed by the kernel when this process dies
(`PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time

_running: list[int] = []  # the process group of the child being waited for


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent (thread) dies; no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG


def _kill_running() -> None:
    for pgid in list(_running):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


def _watch_parent(parent: int, interval_s: float = 0.2) -> None:
    """Exit (and kill the running test) when the parent is gone (reparented to init or a subreaper)."""
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent:
            _kill_running()
            os._exit(0)


def _warm() -> list[str]:
    """Import pytest, its plugins and ect's; returns modules from the working directory (unsafe to fork)."""
    from importlib.metadata import entry_points

    import pytest  # noqa: F401

    autoloaded = [] if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else entry_points(group="pytest11")
    for ep in autoloaded:
        try:
            importlib.import_module(ep.value.split(":")[0])
        except Exception:
            continue
    for name in ("ect.pytest_plugin", "ect.fix.capture_plugin", "_pytest.pytester", "_pytest.python"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    here = os.path.realpath(os.getcwd()) + os.sep
    return [
        name
        for name, mod in list(sys.modules.items())
        if (getattr(mod, "__file__", None) or "").startswith(here)
        and "site-packages" not in (getattr(mod, "__file__", None) or "")
        and name != "ect"
        and not name.startswith("ect.")
    ]


def _child(job: dict[str, object]) -> int:
    os.setsid()
    set_parent_death_signal()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if os.getppid() == 1:  # the zygote died between fork and prctl
        os._exit(3)
    cwd = str(job["cwd"])
    os.chdir(cwd)
    env = job.get("env") or {}
    assert isinstance(env, dict)
    os.environ.update({str(k): str(v) for k, v in env.items()})
    sys.modules.pop("ect.pytest_watchdog", None)  # it reads $ECT_PROGRESS when imported: this run's
    launch = os.path.realpath(sys.path[0] or os.getcwd()) if sys.path else ""
    if sys.path and launch != os.path.realpath(cwd):
        sys.path[0] = cwd
    extra = job.get("path") or []
    assert isinstance(extra, list)
    sys.path[0:0] = [str(p) for p in extra]
    devnull = os.open(os.devnull, os.O_WRONLY)
    out = job.get("output")
    target = os.open(str(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if out else devnull
    os.dup2(target, 1)
    os.dup2(target, 2)
    import pytest

    args = job.get("args") or []
    assert isinstance(args, list)
    # plugins were imported before pytest could rewrite their asserts: that warning is expected here
    # (and a project's `filterwarnings = error` would turn it into an internal error)
    return int(pytest.main(["-W", "ignore::pytest.PytestAssertRewriteWarning", *(str(a) for a in args)]))


def _terminate(signum: int, frame: object) -> None:
    _kill_running()
    os._exit(0)


def main() -> int:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    unsafe = _warm()
    print(json.dumps({"ready": True, "unsafe": unsafe}), flush=True)
    for line in sys.stdin:
        try:
            job = json.loads(line)
        except ValueError:
            continue
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = _child(job)
            finally:
                os._exit(code)
        _running.append(pid)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        _running.remove(pid)
        _kill_running_group(pid)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"pid": pid, "exit": code}), flush=True)
    _kill_running()
    return 0


def _kill_running_group(pgid: int) -> None:
    """What the test left running in its process group ends with it."""
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
