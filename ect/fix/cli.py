"""`ect fix [PATH] [--apply] [--json]`: verified fixes for the loop's failures."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import click

from ect.errors import EctError


@click.command("fix")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--apply", "apply_", is_flag=True, help="Write the best verified fix of each failure.")
@click.option("--json", "as_json", is_flag=True, help="Print the failures and fixes as JSON.")
def fix(path: Path | None, apply_: bool, as_json: bool) -> int:
    """Find failures (compile errors, failing tests) and offer fixes proven to turn them green.

    Every candidate is applied in a scratch copy and the compile step and failing tests are re-run;
    only candidates that pass are shown, best first.
    """
    from ect.changes import Scope
    from ect.config import load_config
    from ect.fix.engine import FixEngine
    from ect.repo import find_root

    root = find_root()
    cfg = load_config(root)
    engine = FixEngine(root, cfg)
    if path is not None:
        if not path.exists():
            raise EctError(f"no such file or directory: {path}", 2)
        full = Path(os.path.abspath(path))
        if full != root and root not in full.parents:
            raise EctError(f"path is outside the repository: {path}", 2)
        scope = Scope(mode="paths", paths=(str(full),))
    else:
        scope = Scope(mode="worktree")
    loop, failures = engine.find_failures(scope)
    if failures:
        engine.use_warm_pytest()  # one pytest import for all candidates
    results = []
    applied: list[dict[str, object]] = []
    for failure in failures:
        res = engine.fix(failure, all_fixes=not apply_)
        results.append(res)
        if res.fixes:
            engine.record("fix.offered", res)
        if apply_ and res.fixes:
            best = res.fixes[0]
            if engine.apply(best):
                engine.record("fix.applied", res, best)
                applied.append({"path": best.path, "title": best.title})
    engine.close()
    unfixed = [r for r in results if not r.fixes and (not apply_ or r.failure.kind != "other")]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "loop": {
                        "outcome": loop.outcome,
                        "tests_failed": loop.tests_failed,
                        "compile_errors": [str(e) for e in loop.compile_errors],
                    },
                    "results": [r.to_json() for r in results],
                    "applied": applied,
                },
                indent=2,
            )
        )
    else:
        _print(results, applied, loop.outcome)
    return 1 if unfixed else 0


def _print(results: Sequence[object], applied: list[dict[str, object]], outcome: str) -> None:
    from ect.fix.engine import FixResult

    if not results:
        click.echo(
            "nothing to fix" if outcome in ("pass", "noop") else "failures found, but none ect can fix"
        )
        return
    for res in results:
        assert isinstance(res, FixResult)
        f = res.failure
        click.echo(f"{f.path}:{f.line}: {f.message}")
        for title, why in res.rejected:  # a candidate whose tests hung: say which test
            if why.startswith("tests timed out"):
                click.echo(f"  not verified: {title}: {why}")
        if not res.fixes:
            click.echo(f"  no verified fix ({res.tried} candidate(s) tried)")
            continue
        for rank, fx in enumerate(res.fixes, 1):
            click.echo(f"  {rank}. {fx.title}  [verified in {fx.verify_ms / 1000:.1f}s]")
            if rank == 1:
                for line in fx.diff.splitlines():
                    click.echo(f"     {line}")
    for item in applied:
        click.echo(f"applied: {item['path']}: {item['title']}")
