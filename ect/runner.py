"""Run tests with pytest in a subprocess, streaming its output and keeping its verdict."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.config import Config
from ect.errors import ConfigError, EnvError
from ect.state import read_json, state_writable, write_json

LAST_FAILED = "last_failed.json"
# pytest exit codes: 0 ok, 1 failures, 2 interrupted (e.g. collection errors), 3 internal error,
# 4 usage error, 5 no tests collected.
PASSING_EXIT_CODES = (0, 5)
TIMED_OUT = 124


@dataclass
class TestRun:
    """The outcome of one pytest run."""

    exit_code: int
    duration_ms: float
    outcomes: dict[str, str] = field(default_factory=dict)  # repo-relative node id -> outcome
    collect_errors: list[str] = field(default_factory=list)
    output: str = ""
    command: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # repo-relative node id -> seconds
    rootpath: str = ""  # pytest's rootdir (node ids in a recording are relative to it)
    timeout_message: str = ""  # set when ect stopped the run (test_timeout or the run's timeout)

    @property
    def ok(self) -> bool:
        return self.exit_code in PASSING_EXIT_CODES

    @property
    def failed(self) -> list[str]:
        return sorted([n for n, o in self.outcomes.items() if o == "failed"] + self.collect_errors)

    @property
    def passed(self) -> list[str]:
        return sorted(n for n, o in self.outcomes.items() if o == "passed")


# Anything with `run_pytest`'s signature (e.g. the LSP server's warm forking runner).
PytestRunner = Callable[..., TestRun]


def python_for(cfg: Config) -> tuple[str, bool]:
    """The interpreter the user's tests run with, and whether it is the project's own environment.

    `python` in the config wins; "auto" takes `.venv/` or `venv/` in the repository, then an
    activated virtualenv other than ect's, then ect's own interpreter (not the project's).
    """
    import shutil

    base = cfg.origin or cfg.root
    if cfg.python != "auto":
        path = Path(cfg.python).expanduser()
        path = path if path.is_absolute() or os.sep not in cfg.python else base / path
        found = str(path) if path.is_file() else shutil.which(cfg.python)
        if found is None or not os.access(found, os.X_OK):
            raise ConfigError(f"python = {cfg.python!r}: no such interpreter")
        return found, True
    for venv in (".venv", "venv"):
        candidate = base / venv / "bin" / "python"
        if os.access(candidate, os.X_OK):
            return str(candidate), True
    active = os.environ.get("VIRTUAL_ENV")
    if active and not _same_dir(active, sys.prefix):
        candidate = Path(active) / "bin" / "python"
        if os.access(candidate, os.X_OK):
            return str(candidate), True
    return sys.executable, False


def _same_dir(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _is_ect_python(python: str) -> bool:
    return python == sys.executable or _same_dir(Path(python).parent.parent, sys.prefix)


def autoload(cfg: Config, project_env: bool) -> bool:
    """Whether pytest may auto-load installed plugins: yes in the project's environment, not in ect's."""
    return project_env if cfg.pytest_autoload == "auto" else bool(cfg.pytest_autoload)


def pytest_command(cfg: Config, files: list[str] | None, parallel: bool) -> list[str]:
    """The pytest command line: all tests when `files` is None. ect's plugins load explicitly."""
    python, project_env = python_for(cfg)
    cmd = [python, "-m", "pytest", "-p", "ect.pytest_plugin", "-p", "ect.pytest_watchdog"]
    if not autoload(cfg, project_env):
        for plugin in cfg.pytest_plugins:
            cmd += ["-p", plugin]
    if (parallel or cfg.xdist) and importlib.util.find_spec("xdist") is not None:
        if not autoload(cfg, project_env):
            cmd += ["-p", "xdist.plugin"]
        cmd += ["-n", "auto"]
    cmd += list(cfg.pytest_args)
    if files is not None:
        cmd += ["--", *files]
    return cmd


def recording_env(root: Path, cfg: Config, out_dir: Path) -> dict[str, str]:
    """Environment that makes ect's pytest plugin record fingerprints into `out_dir`."""
    skip = [cfg.state_dir] + [g[:-3] for g in cfg.exclude if g.endswith("/**") and "*" not in g[:-3]]
    return {
        "ECT_FP_OUT": str(out_dir),
        "ECT_FP_ROOT": str(root),
        "ECT_FP_SKIP": json.dumps(skip),
        "ECT_FP_CODE_CACHE": str(cfg.state_path / "fp-code"),
        "ECT_FP_MAX_SIZE": str(cfg.max_file_size),
    }


def _prctl() -> Any:
    """libc's prctl, looked up in the parent (nothing is imported between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


_PRCTL: Any = None


def _child_setup(death_signal: int = signal.SIGKILL) -> None:  # pragma: no cover - between fork and exec
    """Own process group (ect ends the whole group), and die with ect even on SIGKILL (Linux)."""
    os.setpgid(0, 0)
    if _PRCTL is not None and death_signal:
        _PRCTL(1, int(death_signal))  # PR_SET_PDEATHSIG


class ExitWait:
    """Waits for a process to exit and wakes the moment it does (a pidfd, on Linux), where
    `Popen.wait(timeout)` polls with sleeps and notices up to 50 ms late (about 13 ms for a test run)."""

    def __init__(self, proc: subprocess.Popen[Any]) -> None:
        self.proc = proc
        self.fd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or an old kernel
            self.fd = os.pidfd_open(proc.pid)

    def wait(self, seconds: float, also: int | None = None) -> bool:
        """Whether it exited within `seconds`; a readable `also` (a file descriptor) ends the wait
        early (where pidfds exist: elsewhere it is not watched)."""
        if self.fd is None:
            try:
                self.proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                return False
            return True
        select.select([self.fd] if also is None else [self.fd, also], [], [], seconds)
        return self.proc.poll() is not None  # the pidfd is readable once it has exited

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def start_in_group(cmd: list[str], death_signal: int = signal.SIGKILL, **popen: Any) -> subprocess.Popen[Any]:
    """Start `cmd` in its own process group that gets `death_signal` when ect dies, even by SIGKILL
    (Linux; 0: none). The kernel sends it when the *thread* that started it ends: start long-lived
    processes with 0 and let them watch their parent. End it with `end_group`. `popen`: subprocess.Popen's
    other arguments."""
    import functools

    global _PRCTL
    if _PRCTL is None:
        _PRCTL = _prctl()
    return subprocess.Popen(cmd, preexec_fn=functools.partial(_child_setup, death_signal), **popen)


def pytest_env(
    root: Path, cfg: Config, python: str, project_env: bool, scratch: Path, pythonpath: str | None
) -> dict[str, str]:
    """What pytest's environment needs besides ect's variables: plugin autoload off unless allowed
    (`pytest_autoload`), and `PYTHONPATH` with the source roots of a temporary checkout and, for an
    interpreter that is not ect's, a shim folder in `scratch` holding only the `ect` package."""
    env: dict[str, str] = {}
    if not autoload(cfg, project_env):
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    paths = [str(root / r) for r in cfg.source_roots] if cfg.origin is not None else []
    if not _is_ect_python(python):  # ect's plugins must import there: just the `ect` package, nothing else
        shim = scratch / "shim"
        shim.mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.symlink(Path(__file__).resolve().parent, shim / "ect")
        paths.append(str(shim))
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [pythonpath])])
    return env


def end_group(proc: subprocess.Popen[Any], first: int = signal.SIGTERM, grace: float = 3.0) -> None:
    """End `proc` and everything it started (its process group): `first`, then SIGKILL after `grace` s."""
    for sig in (first, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


HOLD_LIMIT_S = 600.0  # held output waits at most this long for the gate


class _Tee(threading.Thread):
    """Copy the child's output to our stdout (when streaming) and keep its tail."""

    def __init__(self, pipe: Any, stream: bool, keep: int, hold: OutputGate | None = None) -> None:
        super().__init__(daemon=True)
        self.pipe, self.stream, self.keep, self.hold = pipe, stream, keep, hold
        self.chunks: list[str] = []
        self.size = 0
        self.holding = hold is not None  # nothing shown yet: all of it is the tail in `chunks`

    def run(self) -> None:
        import codecs
        import select

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = self.pipe.fileno()
        while True:
            if self.holding and self.stream and self.hold is not None and self.hold.decided:
                self.show("")  # released while the pipe was quiet: what it held, now
            if self.hold is not None and not self.hold.decided:
                try:  # wake up now and then to let held output through once released
                    if not select.select([fd], [], [], 0.1)[0]:
                        continue
                except (OSError, ValueError):
                    break
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            text = decoder.decode(data, final=not data)
            if text:
                self.chunks.append(text)
                self.size += len(text)
                if self.size > 2 * self.keep:
                    joined = "".join(self.chunks)[-self.keep :]
                    self.chunks, self.size = [joined], len(joined)
                if self.stream:
                    self.show(text)
            if not data:
                break

    def show(self, text: str) -> None:
        """Write `text` (already in `chunks`); while held, nothing, and once the gate opens, the tail."""
        if self.holding:
            assert self.hold is not None
            if not self.hold.decided or not self.hold.shown:
                return
            self.holding = False
            text = self.text
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.write(text)
            sys.stdout.flush()

    @property
    def text(self) -> str:
        return "".join(self.chunks)[-self.keep :]


class OutputGate:
    """Holds a run's streamed output back until it is opened (shown) or dropped (never shown)."""

    def __init__(self) -> None:
        self._decided = threading.Event()
        self.shown = False

    def open(self) -> None:
        self.shown = True
        self._decided.set()

    def drop(self) -> None:
        self._decided.set()

    @property
    def decided(self) -> bool:
        return self._decided.is_set()

    def wait(self, timeout: float) -> None:
        if not self._decided.wait(timeout):
            self.drop()  # nobody decided in time: the output is not shown


def _running_test(progress: Path, started: float) -> tuple[str, float]:
    """(what the pytest processes are doing, for how many seconds): the longest-running test, else
    the time since the last activity (an idle xdist worker does not count while others work)."""
    busy: list[tuple[str, float]] = []
    idle: list[float] = []
    try:
        entries = list(os.scandir(progress))
    except OSError:
        entries = []
    for entry in entries:
        try:
            age = time.time() - entry.stat().st_mtime
            with open(entry.path, encoding="utf-8", errors="replace") as fh:
                nodeid = fh.read(4096).strip()
        except OSError:
            continue
        if nodeid == "<collecting>":
            busy.append(("collection (importing the test modules)", age))
        elif nodeid:
            busy.append((nodeid, age))
        else:
            idle.append(age)
    if busy:
        return max(busy, key=lambda b: b[1])
    if idle:
        return "between tests (fixture teardown or session finish)", min(idle)
    return "pytest start-up", time.time() - started


def run_pytest(
    root: Path,
    cfg: Config,
    files: list[str] | None,
    *,
    stream: bool = True,
    parallel: bool = False,
    extra_env: dict[str, str] | None = None,
    timeout: float | None = None,
    on_start: Callable[[subprocess.Popen[Any]], None] | None = None,
    hold: OutputGate | None = None,
    on_results: Callable[[TestRun], None] | None = None,
) -> TestRun:
    """Run pytest on `files` (test files or node ids; None: the whole suite) from the repository root.

    `timeout` bounds the whole run, `cfg.test_timeout` each test. pytest runs in its own process
    group, which ends with this call whatever happens (timeout, Ctrl-C, SIGTERM, an exception).
    `on_start`: called with the pytest process once it runs (a caller that may kill its group).
    `hold`: streamed output waits until the gate is opened or dropped (see `ect.early_run`).
    `on_results`: called with the run as pytest reported it once its results are written, while
    pytest is still exiting (Linux; not at all when they come with the exit).
    """
    setup = _Setup.make(root, cfg, extra_env, stream)
    cmd = pytest_command(cfg, files, parallel)
    proc = setup.start(cmd, stdin=subprocess.DEVNULL)
    return setup.supervise(
        proc, cmd, files, stream=stream, timeout=timeout, on_start=on_start, hold=hold, on_results=on_results
    )


# What a pytest started before its arguments are known runs (`PendingPytest`): the imports every
# run needs (pytest, its built-in plugins, what ect's plugins use), then the arguments as one JSON
# line on stdin (none: exit), then pytest as `python -m pytest` runs it (its `__main__`, the working
# directory on `sys.path`, stdin at /dev/null).
_BOOT = r"""
import os, sys
if sys.path and sys.path[0] == "":
    sys.path[0] = os.getcwd()
try:
    import importlib, pytest, _pytest.config
    for _name in _pytest.config.default_plugins:
        importlib.import_module("_pytest." + _name)
    # what ect's plugins import, not the plugins: pytest warns of a `-p` plugin it cannot rewrite
    import ect.fingerprints.recorder, ect.fingerprints.statements, ect.pytest_nodeids
except BaseException:
    pass  # the run itself reports what does not import
import json
_line = sys.stdin.buffer.readline(1 << 24)
if not _line.endswith(b"\n"):
    raise SystemExit(0)
_args = json.loads(_line)
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
sys.argv = ["pytest", *_args]
import importlib.util, runpy
if importlib.util.find_spec("pytest") is None:
    sys.stderr.write(f"{sys.executable}: No module named pytest\n")  # as `python -m pytest` says
    raise SystemExit(1)
runpy.run_module("pytest", run_name="__main__", alter_sys=True)
"""


class PendingPytest:
    """A pytest process started before the selection is known, so that its start-up (about 0.1 s of
    imports) overlaps the compile step and the selection on the other core. `run(files)` hands it
    its arguments and supervises it as `run_pytest` does; `cancel()` ends it unused. `start` returns
    None when it cannot be started early (the ordinary run then reports why)."""

    def __init__(self, cfg: Config, setup: _Setup, proc: subprocess.Popen[Any], parallel: bool) -> None:
        self.cfg, self.setup, self.proc, self.parallel = cfg, setup, proc, parallel
        self.used = False

    @classmethod
    def start(
        cls, root: Path, cfg: Config, *, stream: bool, parallel: bool, extra_env: dict[str, str] | None
    ) -> PendingPytest | None:
        try:
            setup = _Setup.make(root, cfg, extra_env, stream)
            proc = setup.start([setup.python, "-c", _BOOT], stdin=subprocess.PIPE)
        except EnvError:
            return None
        return cls(cfg, setup, proc, parallel)

    def run(
        self,
        files: list[str] | None,
        *,
        stream: bool = True,
        timeout: float | None = None,
        on_results: Callable[[TestRun], None] | None = None,
    ) -> TestRun:
        """`run_pytest` on `files`, in this process (once)."""
        assert not self.used, "a pending pytest runs once"
        self.used = True
        cmd = pytest_command(self.cfg, files, self.parallel)
        line = (json.dumps(cmd[3:]) + "\n").encode("utf-8", "surrogateescape")
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # it died early: supervise reports how
            self.proc.stdin.write(line)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        return self.setup.supervise(
            self.proc,
            cmd,
            files,
            stream=stream,
            timeout=timeout,
            on_start=None,
            hold=None,
            on_results=on_results,
        )

    def cancel(self) -> None:
        """End it unused (it was never handed arguments) and remove what it was given."""
        if self.used:
            return
        self.used = True
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        end_group(self.proc, signal.SIGKILL, grace=1.0)
        with contextlib.suppress(OSError):
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.setup.discard(results=False)  # it wrote none; the path may be another run's


@dataclass
class _Setup:
    """Everything one pytest run is given: interpreter, environment, scratch and results paths."""

    root: Path
    cfg: Config
    python: str
    project_env: bool
    scratch: Path
    results_path: Path
    progress: Path
    env: dict[str, str]
    ready: int | None = None  # read end of the pipe pytest's plugin writes a byte to with its results

    @classmethod
    def make(cls, root: Path, cfg: Config, extra_env: dict[str, str] | None, stream: bool) -> _Setup:
        import tempfile

        python, project_env = python_for(cfg)
        if _is_ect_python(python) and importlib.util.find_spec("pytest") is None:
            raise EnvError(f"pytest is not installed for {python}: pip install pytest")
        scratch = Path(tempfile.mkdtemp(prefix="ect-run-"))
        state = cfg.state_path if state_writable(cfg.state_path) else scratch  # read-only state: still run
        results_path = state / f"results-{os.getpid()}.json"
        progress = scratch / "progress"
        progress.mkdir()
        # no nested recording; and the tests' own git commands must not see the index the hook checks
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith("ECT_FP_") and k != "GIT_INDEX_FILE"
        }
        env = {
            **inherited,
            "ECT_RESULTS": str(results_path),
            "ECT_PROGRESS": str(progress),
            **(extra_env or {}),
        }
        env.update(pytest_env(root, cfg, python, project_env, scratch, env.get("PYTHONPATH")))
        if stream and sys.stdout.isatty() and "PY_COLORS" not in env and "NO_COLOR" not in env:
            env["PY_COLORS"] = "1"
        return cls(root, cfg, python, project_env, scratch, results_path, progress, env)

    def start(self, cmd: list[str], stdin: Any) -> subprocess.Popen[Any]:
        self.ready, write_end = os.pipe()
        env = {**self.env, "ECT_READY_FD": str(write_end)}
        try:
            return start_in_group(
                cmd,
                cwd=self.root,
                env=env,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
            )
        except OSError as exc:
            self.discard()
            raise EnvError(f"cannot run {self.python}: {exc.strerror}") from None
        finally:
            os.close(write_end)

    def _reported(self, cmd: list[str], on_results: Callable[[TestRun], None] | None) -> None:
        """Hand `on_results` the run as its results file tells it (exit code: pytest's exit status)."""
        data = read_json(self.results_path)
        if on_results is None or not isinstance(data, dict) or not isinstance(data.get("exitstatus"), int):
            return
        run = TestRun(data["exitstatus"], 0.0, command=cmd)
        read_results(run, data, self.root)
        on_results(run)

    def discard(self, results: bool = True) -> None:
        import shutil

        if self.ready is not None:
            with contextlib.suppress(OSError):
                os.close(self.ready)
            self.ready = None
        if results:
            with contextlib.suppress(OSError):
                self.results_path.unlink()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def supervise(
        self,
        proc: subprocess.Popen[Any],
        cmd: list[str],
        files: list[str] | None,
        *,
        stream: bool,
        timeout: float | None,
        on_start: Callable[[subprocess.Popen[Any]], None] | None,
        hold: OutputGate | None,
        on_results: Callable[[TestRun], None] | None = None,
    ) -> TestRun:
        """Wait for the run `proc` is (timeouts, signals), then read its verdict; clean up."""
        root, cfg, results_path, progress = self.root, self.cfg, self.results_path, self.progress
        limit = cfg.test_timeout or None
        started = time.perf_counter()
        wall_start = time.time()
        timed_out: str | None = None
        tee = _Tee(proc.stdout, stream, 256 * 1024 if stream else 8 * 1024 * 1024, hold)
        tee.start()
        exited = ExitWait(proc)
        try:
            if on_start is not None:
                on_start(proc)
            ready = self.ready if on_results is not None else None
            while True:
                if exited.wait(0.2, also=ready):
                    break
                if ready is not None and select.select([ready], [], [], 0)[0]:
                    if os.read(ready, 1):  # nothing: the pipe closed without results
                        self._reported(cmd, on_results)
                    ready = None
                if timeout is not None and time.perf_counter() - started > timeout:
                    what, _ = _running_test(progress, wall_start)
                    timed_out = f"the run took longer than {timeout:g} s (running: {what})"
                    break
                if limit is not None:
                    what, age = _running_test(progress, wall_start)
                    if age > limit:
                        timed_out = f"{what} ran longer than {limit:g} s (test_timeout)"
                        break
            if timed_out is not None:
                end_group(proc, signal.SIGTERM, grace=2.0)
        except BaseException:  # Ctrl-C, SIGTERM, anything: the tests end with us
            end_group(proc, signal.SIGINT, grace=2.0)
            self.discard()
            raise
        finally:
            exited.close()
            if proc.poll() is None:
                end_group(proc, signal.SIGKILL, grace=1.0)
            else:  # the leader exited: nothing it started may outlive it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            tee.join(timeout=5)
            with contextlib.suppress(OSError):
                proc.stdout.close() if proc.stdout else None
            if hold is not None and stream and not tee.is_alive():
                hold.wait(HOLD_LIMIT_S)
                tee.show("")  # what it held back, now that the gate is open (or dropped)
        duration_ms = (time.perf_counter() - started) * 1000
        data = read_json(results_path)
        self.discard()
        output = tee.text
        if timed_out is not None:
            message = f"ect: timed out: {timed_out}; it was stopped"
            if stream:
                click_echo(message)
            run = TestRun(TIMED_OUT, duration_ms, output=output + "\n" + message, command=cmd)
            read_results(run, data, root)
            hung = timed_out.split(" ran longer", 1)[0]
            run.collect_errors = [hung] if "::" in hung else list(files or ["."])
            run.timeout_message = message
            return run
        run = TestRun(proc.returncode, duration_ms, output=output, command=cmd)
        read_results(run, data, root)
        if data is None:
            _diagnose(run, self.python, self.project_env, cfg)
        return run


def click_echo(message: str) -> None:
    import click

    click.echo(message, err=True)


def _diagnose(run: TestRun, python: str, project_env: bool, cfg: Config) -> None:
    """pytest wrote no results: an environment problem (exit 2) rather than failing tests?"""
    tail = [line for line in run.output.strip().splitlines() if line.strip()]
    last = tail[-1].strip() if tail else f"exit code {run.exit_code}"
    if run.exit_code == 1 and "No module named pytest" in run.output:
        raise EnvError(
            f"pytest is not installed for {python} (install it there, or set `python` in [tool.ect])"
        )
    if run.exit_code in (3, 4) and "not found:" not in run.output:
        hint = ""
        if run.exit_code == 4 and not autoload(cfg, project_env):
            hint = (
                " (ect runs pytest in its own environment with plugin autoloading off: list the"
                " plugins you need in [tool.ect] pytest_plugins, or set pytest_autoload = true)"
            )
        what = "rejected its command line (check pytest_args)" if run.exit_code == 4 else "crashed"
        error = EnvError(f"pytest {what}: {last[:300]}{hint}")
        error.run = run
        raise error


def read_results(run: TestRun, data: object, root: Path) -> None:
    """Fill `run` from what ect's pytest plugin wrote (`$ECT_RESULTS`); nothing if it wrote nothing."""
    if not isinstance(data, dict):
        return
    rootpath = Path(data.get("rootpath") or root)
    run.rootpath = str(rootpath)
    for nodeid, entry in (data.get("tests") or {}).items():
        rel = _relative(rootpath, root, nodeid)
        run.outcomes[rel] = entry.get("outcome", "failed")
        run.durations[rel] = float(entry.get("duration") or 0.0)
    run.collect_errors = [_relative(rootpath, root, n) for n in data.get("collect_errors") or []]


def relative_nodeid(rootpath: Path, root: Path, nodeid: str) -> str:
    """A node id relative to pytest's rootdir, made relative to the repository root."""
    return _relative(rootpath, root, nodeid)


def _relative(rootpath: Path, root: Path, nodeid: str) -> str:
    if rootpath == root or not nodeid:
        return nodeid
    file_part, sep, rest = nodeid.partition("::")
    try:
        rel = (rootpath / file_part).relative_to(root).as_posix()
    except ValueError:
        return nodeid
    return rel + sep + rest


def load_last_failed(cfg: Config) -> dict[str, list[str]]:
    """Test file -> node ids that failed in their last run (corrupt file: empty, rebuilt)."""
    data = read_json(cfg.state_path / LAST_FAILED)
    if not isinstance(data, dict):
        return {}
    return {k: [str(n) for n in v] for k, v in data.items() if isinstance(v, list)}


def update_last_failed(
    cfg: Config,
    run: TestRun,
    ran_all: bool,
    previous: dict[str, list[str]],
    partial: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Forget failures that now pass, remember new ones (`partial`: files only some tests of which ran)."""
    failed: dict[str, list[str]] = {} if ran_all else {k: list(v) for k, v in previous.items()}
    ran_files = {n.split("::")[0] for n in run.outcomes} | {n.split("::")[0] for n in run.collect_errors}
    for f in ran_files:
        if f in partial:
            kept = [n for n in failed.get(f, []) if n not in run.outcomes]
            if kept:
                failed[f] = kept
            else:
                failed.pop(f, None)
            continue
        failed.pop(f, None)
    for nodeid in run.failed:
        failed.setdefault(nodeid.split("::")[0], []).append(nodeid)
    if failed != previous:
        with contextlib.suppress(OSError):
            write_json(cfg.state_path / LAST_FAILED, failed)
