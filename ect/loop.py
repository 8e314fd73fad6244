"""One turn of the Edit-Compile-Test loop: changes -> compile -> select -> test -> event."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ect import events
from ect.changes import Change, Scope, collect
from ect.config import Config
from ect.selection import matches

if TYPE_CHECKING:
    from ect.compile_step import CompileError, CompileReport
    from ect.fingerprints.session import EarlyRecord, FingerprintSession
    from ect.graph import Graph
    from ect.runner import PytestRunner, TestRun
    from ect.selection import Selection


# Fingerprints narrow the selection of these modes; explicit paths ask for their tests whatever the
# fingerprints say. Every mode records fingerprints for the tests it runs.
NARROWING_MODES = ("worktree", "staged", "range")


class Reporter:
    """Progress callbacks; the default reports nothing (used by `--json` and other callers)."""

    def changes(self, changes: list[Change]) -> None: ...
    def checkout(self, what: str) -> None: ...
    def still_working(self, what: str) -> None: ...
    def compiled(self, report: CompileReport) -> None: ...
    def selected(self, selection: Selection, files: list[str] | None) -> None: ...
    def tests_done(self, run: TestRun) -> None: ...


@dataclass
class LoopResult:
    """Everything one loop run found and did."""

    changes: list[Change] = field(default_factory=list)
    compile: CompileReport | None = None
    selection: Selection | None = None
    test_files: list[str] | None = None  # None: the whole suite
    test_args: list[str] | None = None  # what pytest ran: test files and node ids (None: everything)
    test_run: TestRun | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)
    outcome: str = "noop"
    exit_code: int = 0
    checked_copy: bool = False  # the index's or commit's content differed: tested in a temporary checkout

    @property
    def compile_errors(self) -> list[CompileError]:
        return self.compile.errors if self.compile else []

    @property
    def selected(self) -> dict[str, list[str]]:
        return self.selection.tests if self.selection else {}

    @property
    def tests_failed(self) -> list[str]:
        return self.test_run.failed if self.test_run else []

    @property
    def duration_ms(self) -> float:
        return sum(self.phases_ms.values())


PROGRESS_AFTER_S = 3.0  # a phase that takes longer says what it is doing


@contextmanager
def _phase(rep: Reporter, what: str) -> Iterator[None]:
    """Tell the reporter what is going on when this phase takes more than a few seconds."""
    timer = threading.Timer(PROGRESS_AFTER_S, rep.still_working, args=(what,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def python_files_to_compile(cfg: Config, changes: list[Change], root: Path) -> list[str]:
    """Changed `.py` files that exist and are not excluded."""
    return [
        c.path
        for c in changes
        if c.path.endswith(".py")
        and not c.deleted
        and matches(c.path, cfg.exclude) is None
        and (root / c.path).is_file()
    ]


def check_layout(cfg: Config) -> None:
    """Configured source roots and test paths must exist (else nothing would be found, silently)."""
    from ect.errors import ConfigError

    base = cfg.origin or cfg.root
    for key in ("source_roots", "test_paths"):
        for rel in getattr(cfg, key):
            if not (base / rel).exists():
                raise ConfigError(f"{cfg.source}: '{key}' names {rel!r}, which does not exist in {base}")


def run_loop(
    root: Path,
    cfg: Config,
    scope: Scope,
    *,
    run_tests: bool = True,
    trigger: str = "cli",
    reporter: Reporter | None = None,
    stream: bool = True,
    parallel: bool = False,
    timeout: float | None = None,
    pytest_runner: PytestRunner | None = None,
    run_wrapper: Callable[[Callable[[], TestRun]], TestRun] | None = None,
) -> LoopResult:
    """Run the loop once and record a `loop.run` event (`timeout`: seconds pytest may take).

    `pytest_runner` runs the selected tests instead of a pytest process of the loop's own (`watch`'s
    warm pytest); `run_wrapper` is handed the loop's own way of running them, to call (`verify`).

    `--staged` and `--range` test the index's or the commit's content: when it differs from the
    working tree, the loop runs in a temporary checkout of it (`ect.snapshot`).
    """
    from ect.snapshot import content_root
    from ect.state import state_writable

    rep = reporter or Reporter()
    res = LoopResult()
    check_layout(cfg)
    state_writable(cfg.state_path)  # a state "directory" that is a file: one line, before any work
    t0 = time.perf_counter()
    state_prefix = cfg.state_dir.rstrip("/") + "/"
    res.changes = [c for c in collect(root, scope) if not c.path.startswith(state_prefix)]
    res.phases_ms["changes"] = (time.perf_counter() - t0) * 1000
    rep.changes(res.changes)
    try:
        if _is_noop(cfg, scope, res, run_tests):
            return res
        t = time.perf_counter()
        what = "checking out the staged content" if scope.mode == "staged" else "checking out the commit"
        with ExitStack() as stack:
            with _phase(rep, what):
                snapshot = stack.enter_context(content_root(root, scope))
            work_root, work_cfg = root, cfg
            if snapshot is not None:
                work_root = snapshot
                work_cfg = replace(cfg, root=snapshot, state_dir=str(cfg.state_path.resolve()), origin=root)
                res.checked_copy = True
                rep.checkout("the staged content" if scope.mode == "staged" else "the pushed commit")
                res.phases_ms["checkout"] = (time.perf_counter() - t) * 1000
            _compile_select_test(
                work_root,
                work_cfg,
                scope,
                res,
                rep,
                run_tests,
                stream,
                parallel,
                timeout,
                pytest_runner,
                run_wrapper,
            )
    except BaseException:
        if res.outcome == "noop":
            res.outcome, res.exit_code = "error", 2
        raise
    finally:
        _record(root, cfg, scope, res, trigger)
    return res


def _is_noop(cfg: Config, scope: Scope, res: LoopResult, run_tests: bool) -> bool:
    from ect.runner import load_last_failed

    if res.changes or scope.mode == "all" or (run_tests and load_last_failed(cfg)):
        return False
    res.outcome, res.exit_code = "noop", 0
    return True


def _compile_select_test(
    root: Path,
    cfg: Config,
    scope: Scope,
    res: LoopResult,
    rep: Reporter,
    run_tests: bool,
    stream: bool,
    parallel: bool,
    timeout: float | None,
    pytest_runner: PytestRunner | None = None,
    run_wrapper: Callable[[Callable[[], TestRun]], TestRun] | None = None,
) -> None:
    from ect.runner import load_last_failed

    everything = scope.mode == "all"
    last_failed = load_last_failed(cfg)

    from ect import graph as graph_mod
    from ect.compile_step import run_compile
    from ect.fingerprints.session import FingerprintSession, fingerprints_enabled
    from ect.selection import Selection, select
    from ect.state import state_writable

    writable = state_writable(cfg.state_path)  # read-only state: static selection, nothing kept
    recording = writable and fingerprints_enabled(cfg)
    fp = None
    early = None
    pending = None
    store_early = _EarlyStore(root, scope, res)
    try:
        if everything and run_tests and pytest_runner is None:
            # every test runs whatever compiling finds: start them now, on the other core
            from ect.early_run import EarlyRun

            fp = FingerprintSession.open(root, cfg) if recording else None
            t_tests = time.perf_counter()
            extra_env = fp.recording_env() if fp is not None else None
            store_early.fp = fp
            early = EarlyRun(
                root,
                cfg,
                stream=stream,
                parallel=parallel,
                extra_env=extra_env,
                timeout=timeout,
                on_results=store_early,
            )
        elif run_tests and pytest_runner is None and res.changes:
            # pytest's start-up (imports) overlaps compiling and selecting, on the other core
            from ect.runner import PendingPytest

            fp = FingerprintSession.open(root, cfg) if recording else None
            extra_env = fp.recording_env() if fp is not None else None
            pending = PendingPytest.start(root, cfg, stream=stream, parallel=parallel, extra_env=extra_env)
        t = time.perf_counter()
        if everything:
            to_compile = graph_mod.list_python_files(root, cfg)
        else:
            to_compile = python_files_to_compile(cfg, res.changes, root)
        with _phase(rep, f"compiling {len(to_compile)} files"):
            res.compile = run_compile(root, cfg, to_compile)
        res.phases_ms["compile"] = (time.perf_counter() - t) * 1000
        rep.compiled(res.compile)
        if not res.compile.ok:
            res.outcome, res.exit_code = "fail", 1
            return
        if not run_tests:
            res.outcome = "pass"
            return

        t = time.perf_counter()
        with _phase(rep, "reading the import graph"):
            graph, _ = graph_mod.build(root, cfg, trees=res.compile.trees)
        if fp is None and recording:
            fp = FingerprintSession.open(root, cfg)
        store_early.fp, store_early.graph = fp, graph
        total = sum(1 for f in graph.files if _is_test(f, cfg))
        if everything:
            res.selection = Selection(run_all_reasons=["--all"])
        elif fp is not None and scope.mode in NARROWING_MODES:
            res.selection = fp.select(graph, res.changes, last_failed)
        else:
            res.selection = select(cfg, graph, res.changes, last_failed)
        res.selection.total_test_files = total
        if not writable:
            res.selection.notes.append(
                f"{cfg.state_path} is read-only: static selection; fingerprints, failures and events not kept"
            )
        res.test_files = None if res.selection.run_all else sorted(res.selection.tests)
        res.test_args = res.selection.pytest_args()
        res.phases_ms["select"] = (time.perf_counter() - t) * 1000
        rep.selected(res.selection, res.test_files)
        if res.test_files == []:
            res.outcome, res.exit_code = "pass", 0
            return

        from ect.runner import run_pytest, update_last_failed

        if early is not None:
            res.test_run, early = early.result(), None
        else:
            t_tests = time.perf_counter()
            extra_env = fp.recording_env() if fp is not None else None

            def run_selected() -> TestRun:
                nonlocal pending
                if pending is not None:
                    run_pending, pending = pending, None
                    return run_pending.run(
                        res.test_args, stream=stream, timeout=timeout, on_results=store_early
                    )
                kwargs: dict[str, Any] = {
                    "stream": stream,
                    "parallel": parallel,
                    "extra_env": extra_env,
                    "timeout": timeout,
                }
                if pytest_runner is not None:
                    return pytest_runner(root, cfg, res.test_args, **kwargs)
                return run_pytest(root, cfg, res.test_args, **kwargs, on_results=store_early)

            res.test_run = run_wrapper(run_selected) if run_wrapper is not None else run_selected()
        res.phases_ms["tests"] = (time.perf_counter() - t_tests) * 1000
        run = _as_loop_sees(res.test_run, res.test_files)
        update_last_failed(cfg, run, res.test_files is None, last_failed, set(res.selection.nodes))
        if fp is not None:
            t = time.perf_counter()
            with _phase(rep, "storing per-test fingerprints"):
                stored, store_early.record = store_early.record, None
                if stored is None or not stored.settle(run):  # else stored while pytest was exiting
                    fp.uncommitted = _uncommitted(root, scope, res.changes)
                    fp.record(graph, run, res.selection)
            res.phases_ms["record"] = (time.perf_counter() - t) * 1000
        rep.tests_done(run)
        res.outcome, res.exit_code = ("pass", 0) if run.ok else ("fail", 1)
    finally:
        if early is not None:  # compiling failed, or anything else ended the loop: so do the tests
            early.cancel()
        if store_early.record is not None:  # the loop ended before the run did: nothing is stored
            store_early.record.abandon()
        if pending is not None:  # nothing to test, or the loop ended early: it never runs
            pending.cancel()
        if fp is not None:
            fp.close()  # also removes a recording an interrupted run left


def _as_loop_sees(run: TestRun, test_files: list[str] | None) -> TestRun:
    if not run.ok and not run.failed:  # pytest died before reporting: rerun these files next time
        run.collect_errors = list(test_files or ["."])
    return run


class _EarlyStore:
    """`on_results` for the test run: starts storing the recording (`EarlyRecord`) the moment
    pytest has written its results, while it is still exiting; the loop then only settles it."""

    def __init__(self, root: Path, scope: Scope, res: LoopResult) -> None:
        self.root, self.scope, self.res = root, scope, res
        self.fp: FingerprintSession | None = None
        self.graph: Graph | None = None
        self.record: EarlyRecord | None = None

    def __call__(self, reported: TestRun) -> None:
        from ect.fingerprints.session import EarlyRecord

        fp, graph, selection = self.fp, self.graph, self.res.selection
        if fp is None or graph is None or selection is None or self.record is not None:
            return  # not recording, or the tests ended before the selection was made (`--all`)
        fp.uncommitted = _uncommitted(self.root, self.scope, self.res.changes)
        self.record = EarlyRecord(fp, graph, _as_loop_sees(reported, self.res.test_files), selection)


def _uncommitted(root: Path, scope: Scope, changes: list[Change]) -> set[str] | None:
    """The files whose tested content differs from HEAD (None: unknown), for `ingest`."""
    if scope.mode == "range":
        return set()  # a commit's content
    if scope.mode in ("worktree", "staged"):
        return {c.path for c in changes}
    from ect.changes import worktree_changes
    from ect.errors import EctError

    try:
        return {c.path for c in worktree_changes(root)}
    except EctError:
        return None


def _is_test(path: str, cfg: Config) -> bool:
    from ect.selection import is_test_file

    return is_test_file(path, cfg)


def _record(root: Path, cfg: Config, scope: Scope, res: LoopResult, trigger: str) -> None:
    from ect.gitmeta import head

    sha, branch = head(root)
    run = res.test_run
    sel = res.selection
    events.record(
        cfg.state_path,
        "loop.run",
        source=trigger,
        repo=root.name,
        commit_sha=sha,
        duration_ms=round(res.duration_ms, 3),
        outcome=res.outcome,
        branch=branch,
        mode=scope.mode,
        phases={k: round(v, 3) for k, v in res.phases_ms.items()},
        files_changed=len(res.changes),
        compile_errors=len(res.compile_errors),
        test_files_selected=(sel.total_test_files if sel and sel.run_all else len(sel.tests)) if sel else 0,
        test_files_total=sel.total_test_files if sel else None,
        tests_run=len(run.outcomes) if run else 0,
        tests_failed=len(run.failed) if run else 0,
        tests_duration_ms=round(run.duration_ms, 3) if run else 0,
    )
