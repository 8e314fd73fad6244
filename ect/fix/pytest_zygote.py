"""A warm pytest process that forks a child per run (`python -m ect.fix.pytest_zygote`).

Importing pytest and the installed plugins costs most of a small test run; this process pays it once.
Protocol, one JSON object per line: request `{"args": [...], "cwd": ..., "env": {...}, "path": [...]}`,
answers `{"pid": N}` when the child starts and `{"pid": N, "exit": code}` when it ends. The child runs
`pytest.main(args)` in `cwd` with `env` applied and `path` put first on `sys.path`. The project's own
modules are never imported here, so each child sees the code as it is on disk.
"""

from __future__ import annotations

import importlib
import json
import os
import sys


def _warm() -> list[str]:
    """Import pytest, its plugins and ect's; returns modules from the working directory (unsafe to fork)."""
    from importlib.metadata import entry_points

    import pytest  # noqa: F401

    for ep in entry_points(group="pytest11"):
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
    cwd = str(job["cwd"])
    os.chdir(cwd)
    env = job.get("env") or {}
    assert isinstance(env, dict)
    os.environ.update({str(k): str(v) for k, v in env.items()})
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


def main() -> int:
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
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"pid": pid, "exit": code}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
