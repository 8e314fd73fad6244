"""`ect watch`: on every save, compile that file and run its affected tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click


@click.command("watch")
@click.option(
    "--debounce",
    default=300,
    show_default=True,
    type=click.IntRange(min=0, max=60_000),
    help="Milliseconds to wait for more saves.",
)
@click.option("--no-tests", is_flag=True, help="Compile only.")
@click.option("-n", "--parallel", is_flag=True, help="Run tests with pytest-xdist when installed.")
@click.option("--cold", is_flag=True, help="Start pytest afresh on every run (default: fork a warm pytest).")
def watch(debounce: int, no_tests: bool, parallel: bool, cold: bool) -> int:
    """Watch the repository; each batch of saves runs one loop on the saved files.

    Tests run in a fork of a warm process that has pytest and its plugins imported (never the
    project's code), so a small selection starts at once; `--cold` starts pytest afresh instead.
    """
    from watchfiles import Change
    from watchfiles import watch as watch_changes

    from ect.changes import Scope
    from ect.config import load_config
    from ect.errors import Terminated
    from ect.fix.warm_pytest import WarmPytest
    from ect.loop import run_loop
    from ect.repo import find_root

    root = find_root()
    cfg = load_config(root)
    state = cfg.state_path.resolve()
    warm = None if cold or no_tests or parallel else WarmPytest(root, cfg)
    click.echo(f"ect: watching {root} (Ctrl-C to stop)")

    def wanted(change: object, path: str) -> bool:
        p = Path(path)
        if p.is_relative_to(state):
            return False
        parts = p.relative_to(root).parts if p.is_relative_to(root) else p.parts
        if any(part.startswith((".", "pytest-cache-files-")) or part == "__pycache__" for part in parts):
            return False
        if change == Change.deleted:
            return p.suffix == ".py"
        return p.is_file() and not p.name.endswith("~")

    try:
        for batch in watch_changes(
            root, watch_filter=wanted, debounce=debounce, rust_timeout=0, raise_interrupt=False
        ):
            paths = sorted({os.path.relpath(p, root) for _, p in batch})
            if not paths:
                continue
            started = time.strftime("%H:%M:%S")
            cfg = load_config(root)
            res = run_loop(
                root,
                cfg,
                Scope(mode="paths", paths=tuple(str(root / p) for p in paths)),
                run_tests=not no_tests,
                trigger="watch",
                stream=False,
                parallel=parallel,
                pytest_runner=warm.run_pytest if warm is not None else None,
            )
            click.echo(_status_line(started, paths, res))
            for err in res.compile_errors:
                click.echo(f"  {err}")
            if res.test_run is not None and res.test_run.failed:
                for nodeid in res.test_run.failed[:20]:
                    click.echo(f"  FAILED {nodeid}")
    except Terminated:
        click.echo("ect: stopped watching")
        raise  # SIGTERM/SIGHUP: exit 128+signal (the running tests were ended by the runner)
    except KeyboardInterrupt:
        pass
    finally:
        if warm is not None:
            warm.stop()
    click.echo("ect: stopped watching")
    return 0


def _status_line(started: str, paths: list[str], res: object) -> str:
    from ect.loop import LoopResult

    assert isinstance(res, LoopResult)
    what = paths[0] if len(paths) == 1 else f"{len(paths)} files"
    sel = res.test_files
    tests = "all tests" if sel is None else f"{len(sel)} test file{'s' * (len(sel) != 1)}"
    if res.compile_errors:
        verdict = click.style(f"{len(res.compile_errors)} compile error(s)", fg="red")
    elif res.test_run is None:
        verdict = click.style("ok", fg="green") + " (no tests affected)"
    elif res.test_run.ok:
        verdict = click.style(f"{len(res.test_run.passed)} passed", fg="green") + f" in {tests}"
    else:
        verdict = click.style(f"{len(res.test_run.failed)} failed", fg="red") + f" in {tests}"
    return f"[{started}] {what}: {verdict} ({res.duration_ms:.0f} ms)"
