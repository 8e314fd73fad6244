"""Background training after commits: the post-commit hook's launcher and the one-trainer lock.

With `[tool.ect.model] train_after_commit = true`, the post-commit hook runs `main()` detached; it starts
`ect model train --background --until-done` in its own session (no terminal, output appended to
`<state>/model-train.log`) unless one already runs for this repository, and returns at once. At most one
trainer runs: it holds an exclusive `flock` on `<state>/model-train.lock` for its whole life (the
launcher takes the lock and hands it over, so two commits in a row cannot both start one). A running
trainer picks up later commits itself (a refresh on the changed files) and exits once the model is up
to date; the next commit starts one again.

Stdlib and ect.config only: no torch, no transformers, no click on this path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

LOCK_NAME = "model-train.lock"
LOG_NAME = "model-train.log"
LOCK_FD_ENV = "ECT_MODEL_TRAIN_LOCK_FD"  # the inherited, already locked descriptor of a launched trainer
MAX_LOG_BYTES = 1 << 20  # the log is cut to its last half when it grows past this
# set by git for the hook only; a long-lived trainer must not inherit them (a temporary index file...)
_HOOK_ENV = ("GIT_INDEX_FILE", "GIT_PREFIX", "GIT_REFLOG_ACTION", "GIT_EDITOR", "GIT_EXEC_PATH")
_HOOK_ENV_PREFIXES = ("GIT_AUTHOR_", "GIT_COMMITTER_")

_held: list[int] = []  # the lock descriptor this process holds (kept open until it exits)


def _open_lock(state: Path) -> int:
    from ect.state import ensure_state_dir

    ensure_state_dir(state)
    return os.open(state / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_pid(fd: int, pid: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid}\n".encode(), 0)


def running_trainer(state: Path) -> int | None:
    """The pid of the background trainer holding this repository's lock, or None when none runs."""
    path = state / LOCK_NAME
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1  # locked, pid not written yet
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def hold_trainer_lock(state: Path) -> int | None:
    """Take (or adopt from the launcher) the one-trainer lock for this process's life.

    Returns None when another trainer holds it (its pid, or -1 when unknown, is what the caller reports
    via `running_trainer`)."""
    inherited = os.environ.pop(LOCK_FD_ENV, "")
    if inherited.isdigit():
        fd = int(inherited)
        with contextlib.suppress(OSError):
            same = os.path.samestat(os.fstat(fd), os.stat(state / LOCK_NAME))
            if same and _try_lock(fd):  # the launcher's lock: the same open file, so this succeeds
                os.set_inheritable(fd, False)  # git and other children must not keep it alive
                _write_pid(fd, os.getpid())
                _held.append(fd)
                return fd
    fd = _open_lock(state)
    if not _try_lock(fd):
        os.close(fd)
        return None
    _write_pid(fd, os.getpid())
    _held.append(fd)
    return fd


def release_trainer_lock(fd: int) -> None:
    """Give up a lock taken by `hold_trainer_lock` before this process ends."""
    if fd in _held:
        _held.remove(fd)
        os.close(fd)


def _trim_log(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size > MAX_LOG_BYTES:
            data = path.read_bytes()[-MAX_LOG_BYTES // 2 :]
            path.write_bytes(data[data.find(b"\n") + 1 :])


def trainer_env() -> dict[str, str]:
    """This environment without the variables git sets for the hook alone."""
    return {
        k: v for k, v in os.environ.items() if k not in _HOOK_ENV and not k.startswith(_HOOK_ENV_PREFIXES)
    }


def start_trainer(
    root: Path, state: Path, extra_args: Sequence[str] = (), python: str = sys.executable
) -> int | None:
    """Start `ect model train --background --until-done [extra_args]` detached in `root`; its pid, or
    None when a trainer already runs. Never waits for it."""
    cmd = [python, "-m", "ect", "model", "train", "--background", "--until-done", *extra_args]
    fd = _open_lock(state)
    try:
        if not _try_lock(fd):
            return None
        log = state / LOG_NAME
        _trim_log(log)
        with open(log, "ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            out.write(f"--- {stamp} after a commit: ect {' '.join(cmd[3:])}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal: Ctrl-C in the shell and closing it leave it alone
                pass_fds=(fd,),
                env={**trainer_env(), LOCK_FD_ENV: str(fd)},
            )
        _write_pid(fd, proc.pid)  # the trainer rewrites it; here for a look before it starts
        return proc.pid  # detached on purpose: never waited on (this launcher exits at once)
    finally:
        os.close(fd)  # the trainer keeps the lock through its own copy of the descriptor


def _find_root(start: Path) -> Path | None:
    for here in (start, *start.parents):
        if (here / ".git").exists():
            return here
    return None


def maybe_start(cwd: Path) -> str:
    """The hook's job: start a trainer when the repository opted in; says what happened."""
    import importlib.util

    from ect.models.settings import model_settings

    from ect.config import load_config

    root = _find_root(cwd)
    if root is None:
        return "not in a git work tree"
    cfg = load_config(root)
    settings = model_settings(cfg)
    if not settings.train_after_commit:
        return "off ([tool.ect.model] train_after_commit is not set)"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (the model extra): no background training"
    pid = start_trainer(root, cfg.state_path, settings.train_after_commit_args)
    if pid is None:
        return f"already running (pid {running_trainer(cfg.state_path)})"
    return f"started pid {pid}"


def main() -> None:
    """Entry point for the post-commit hook: never fails, never prints (a failure goes to the log)."""
    try:
        maybe_start(Path.cwd())
    except Exception as exc:  # the hook must not get in the way; leave a trace where the user looks
        with contextlib.suppress(Exception):
            root = _find_root(Path.cwd())
            if root is not None:
                from ect.config import load_config
                from ect.state import ensure_state_dir

                state = ensure_state_dir(load_config(root).state_path)
                with open(state / LOG_NAME, "a") as fh:
                    fh.write(f"ect: post-commit training not started: {exc}\n")


if __name__ == "__main__":  # pragma: no cover
    main()
