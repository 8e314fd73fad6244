"""Console entry point with a fast path for the most frequent call: a no-op `ect check`.

A pre-commit hook runs `ect check --staged` on every commit; most of the time nothing
that ect cares about is pending besides what the full path would also call a no-op.
This path answers with one `git` process spawned directly (no `subprocess`, `click` or
`tomllib` import), records the run, and exits. Anything unusual falls through to the
full CLI, which validates everything: the fast path only ever skips work that the full
path would also skip.
"""

from __future__ import annotations

import os
import sys
import time

_FAST_ARGS = {"--staged", "--trigger=hook", "--trigger=cli", "--trigger=ci"}
CONFIG_STAMP = "config.ok"


def _spawn_git(root: str, args: list[str]) -> bytes | None:
    """stdout of `git args` run in `root`, or None if it failed."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.posix_spawnp(
            "git",
            ["git", *args],
            {**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, write_fd, 1),
                (os.POSIX_SPAWN_CLOSE, read_fd),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks) if os.waitstatus_to_exitcode(status) == 0 else None


def config_signature(root: str) -> str:
    """Size and mtime of the files config is read from: the stamp the full path leaves."""
    parts = []
    for name in ("pyproject.toml", "ect.toml"):
        try:
            st = os.stat(os.path.join(root, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:-")
    return " ".join(parts)


def _find_root() -> str | None:
    here = os.getcwd()
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def try_noop(args: tuple[str, ...]) -> bool:
    """Handle a no-op `ect check [--staged]`; False means: take the full path."""
    started = time.perf_counter()
    root = _find_root()
    if root is None:
        return False
    state = os.path.join(root, ".ect")
    try:
        with open(os.path.join(state, CONFIG_STAMP), "rb") as fh:
            if fh.read(4096) != config_signature(root).encode():
                return False  # config changed (or a custom state_dir): the full path re-validates it
        if os.path.getsize(os.path.join(state, "last_failed.json")) > 2:
            return False  # failures from last time are re-run
    except FileNotFoundError:
        pass
    except OSError:
        return False
    if not os.path.exists(os.path.join(state, CONFIG_STAMP)):
        return False
    staged = "--staged" in args
    trigger = next((a.split("=", 1)[1] for a in args if a.startswith("--trigger=")), "cli")
    git_args = (
        ["diff", "--cached", "--name-only", "-z", "--no-ext-diff"]
        if staged
        else ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"]
    )
    out = _spawn_git(root, git_args)
    if out is None or out:
        return False
    from pathlib import Path

    from ect import events
    from ect.gitmeta import head

    changes_ms = (time.perf_counter() - started) * 1000
    sha, branch = head(Path(root))
    events.record(
        Path(state),
        "loop.run",
        source=trigger,
        repo=os.path.basename(root),
        commit_sha=sha,
        duration_ms=round(changes_ms, 3),
        outcome="noop",
        branch=branch,
        mode="staged" if staged else "worktree",
        phases={"changes": round(changes_ms, 3)},
        files_changed=0,
        compile_errors=0,
        test_files_selected=0,
        test_files_total=None,
        tests_run=0,
        tests_failed=0,
        tests_duration_ms=0,
        fast_path=True,
    )
    sys.stdout.write("ect: nothing to check (no changes)\n")  # = check_cmd.NOOP_LINE
    return True


def _checkout_root(start: str) -> str | None:
    """The nearest directory at or above `start` with a `.git` (no git process: this is start-up)."""
    here = start
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def isolate_from_checkout() -> list[str]:
    """Take the checked-out project's own folders off `sys.path`; returns what was removed.

    ect never imports the code it checks (its tests run in their own process, with the path as
    given), but `PYTHONPATH=src` or `python -m ect` would put the project first on ect's own path: a
    project that is one of ect's dependencies (click, say) would then run, broken or not, as ect.
    Installed environments inside the checkout (a `.venv`) and ect's own folder stay.
    """
    cwd = os.path.realpath(os.getcwd())
    root = _checkout_root(cwd)
    if root is None:
        return []
    own = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    kept: list[str] = []
    removed: list[str] = []
    for entry in sys.path:
        full = os.path.realpath(entry or cwd)
        inside = full == root or full.startswith(root + os.sep)
        installed = (
            full == own
            or "site-packages" in full
            or "dist-packages" in full
            or any(full == p or full.startswith(p + os.sep) for p in prefixes)
            or full.endswith(".zip")
        )
        (removed if inside and not installed else kept).append(entry)
    sys.path[:] = kept
    return removed


def main() -> None:
    """`ect`: the fast no-op path when it applies, else the full CLI."""
    isolate_from_checkout()
    argv = tuple(sys.argv[1:])
    if "--trigger" in argv[:-1]:  # `--trigger hook` -> `--trigger=hook`
        i = argv.index("--trigger")
        argv = (*argv[:i], f"--trigger={argv[i + 1]}", *argv[i + 2 :])
    if argv[:1] == ("check",) and set(argv[1:]) <= _FAST_ARGS and not os.environ.get("ECT_NO_FAST_PATH"):
        try:
            if try_noop(argv[1:]):
                sys.exit(0)
        except Exception:  # anything odd: the full path handles (and reports) it
            pass
    from ect.cli import main as full_main

    full_main()
