"""The loop's handle on fingerprints: select with them, record while tests run, store the result.

Any failure here degrades to static selection (or to the full suite for a corrupt
database); it never narrows the selection and never fails the loop.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ect.changes import Change
from ect.config import Config, check_table

if TYPE_CHECKING:
    from ect.fingerprints.store import Store
    from ect.graph import Graph
    from ect.runner import TestRun
    from ect.selection import Selection

HOOKS_SCHEMA = {"fingerprints": ("bool", True)}


def fingerprints_enabled(cfg: Config) -> bool:
    """`[tool.ect.hooks] fingerprints = false` turns per-test fingerprints off."""
    return bool(check_table("hooks", cfg.section("hooks"), HOOKS_SCHEMA, cfg.source)["fingerprints"])


class FingerprintSession:
    """One loop run's use of the fingerprint database."""

    def __init__(self, root: Path, cfg: Config, store: Store | None, problem: str | None) -> None:
        self.root = root
        self.cfg = cfg
        self.store = store
        self.problem = problem
        self.out_dir: Path | None = None
        self._env: str | None = None
        self.uncommitted: set[str] | None = None  # files differing from HEAD in the content tested

    @classmethod
    def open(cls, root: Path, cfg: Config) -> FingerprintSession | None:
        from ect.fingerprints.store import open_store
        from ect.state import ensure_state_dir

        ensure_state_dir(cfg.state_path)
        try:
            store = open_store(root, cfg)
        except (sqlite3.Error, OSError) as exc:
            return cls(root, cfg, None, f"fingerprint database unusable ({exc}): static selection only")
        if store.rebuilt == "outdated":
            why = "fingerprints were recorded by an older ect: recording the full suite again"
            return cls(root, cfg, store, why)
        if store.rebuilt:
            return cls(root, cfg, store, "fingerprint database was corrupt: rebuilt, running the full suite")
        return cls(root, cfg, store, None)

    @property
    def env(self) -> str:
        if self._env is None:
            from ect.fingerprints.ingest import environment

            self._env = environment()
        return self._env

    def select(self, graph: Graph, changes: list[Change], last_failed: dict[str, list[str]]) -> Selection:
        from ect.selection import Selection, select

        if self.store is not None and self.store.rebuilt:
            return Selection(run_all_reasons=[str(self.problem)])
        if self.store is None:
            sel = select(self.cfg, graph, changes, last_failed)
            if self.problem:
                sel.notes.append(self.problem)
            return sel
        if self.store.full_recording() is None:
            sel = select(self.cfg, graph, changes, last_failed)
            sel.notes.append(
                "the whole suite has not been recorded yet: static selection "
                "(`ect check --all` records every test once; later runs then select per test)"
            )
            return sel
        from ect.fingerprints.refine import refine

        try:
            return refine(self.root, self.cfg, graph, changes, last_failed, self.store, self.env)
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            sel = select(self.cfg, graph, changes, last_failed)
            sel.notes.append(f"fingerprints unusable ({type(exc).__name__}: {exc}): static selection")
            return sel

    def recording_env(self) -> dict[str, str]:
        from ect.runner import recording_env

        if self.out_dir is None:  # one recording per session, however often asked
            self.out_dir = Path(tempfile.mkdtemp(prefix="fp-", dir=self.cfg.state_path))
        return recording_env(self.root, self.cfg, self.out_dir)

    def close(self) -> None:
        if self.out_dir is not None:
            shutil.rmtree(self.out_dir, ignore_errors=True)
            self.out_dir = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def record(
        self,
        graph: Graph,
        run: TestRun,
        selection: Selection,
        proceed: Callable[[], bool] | None = None,
    ) -> int:
        """Store what the run recorded; returns the number of tests recorded. `proceed` (see
        `ingest`) False: nothing is stored and the session stays open (-1)."""
        from ect.fingerprints.ingest import Withdrawn

        withdrawn = False
        try:
            if self.store is None or self.out_dir is None:
                return 0
            from ect.fingerprints.ingest import ingest, load_raw
            from ect.runner import relative_nodeid

            raw = load_raw(self.out_dir)
            if raw is None:
                return 0
            rootpath = Path(run.rootpath or self.root)
            nodeid_map = {ctx: relative_nodeid(rootpath, self.root, ctx) for ctx in raw["executed"]}
            for key in ("reads", "dirs"):
                for ctx in raw[key]:
                    nodeid_map.setdefault(ctx, relative_nodeid(rootpath, self.root, ctx))
            for ctx in [*raw["opaque"], *raw["empty_files"]]:
                nodeid_map.setdefault(ctx, relative_nodeid(rootpath, self.root, ctx))
            nodeid_map[""] = ""
            whole = None if selection.run_all else [f for f in selection.tests if f not in selection.nodes]
            return ingest(
                self.store,
                self.root,
                graph,
                raw,
                run.outcomes,
                run.durations,
                nodeid_map,
                whole,
                run.collect_errors,
                self.env,
                [n for ids in selection.nodes.values() for n in ids if "[" not in n],
                self.uncommitted,
                proceed,
            )
        except Withdrawn:
            withdrawn = True
            return -1
        except (sqlite3.Error, OSError, ValueError, KeyError, TypeError):
            return 0  # a failed recording only costs precision next time
        finally:
            if not withdrawn:
                self.close()


def _verdict(run: TestRun) -> tuple[object, ...]:
    """What a recording is made from, of a run."""
    return (run.exit_code, run.outcomes, run.collect_errors, run.rootpath, run.durations)


class EarlyRecord:
    """Stores a recording while pytest is still exiting (its interpreter's shutdown takes 0.1-0.3 s
    on a large suite): made from the run as pytest reported it in its results file, and written only
    if the run, once ended, is that run (`settle`); otherwise nothing is written and the loop records
    as usual. The session is used by this thread alone until `settle` returns."""

    WAIT_S = 600.0  # the longest the thread waits for the run's end before giving up (nothing written)

    def __init__(self, fp: FingerprintSession, graph: Graph, run: TestRun, selection: Selection) -> None:
        self.fp, self.run = fp, run
        self.decided = threading.Event()
        self.same = False
        self.count: int | None = None
        self.thread = threading.Thread(target=self._work, args=(graph, selection), daemon=True)
        self.thread.start()

    def _work(self, graph: Graph, selection: Selection) -> None:
        self.count = self.fp.record(graph, self.run, selection, proceed=self._proceed)

    def _proceed(self) -> bool:
        return self.decided.wait(self.WAIT_S) and self.same

    def settle(self, final: TestRun) -> bool:
        """Whether the recording was stored from `final` (the run as it ended); waits for it."""
        self.same = _verdict(final) == _verdict(self.run)
        self.decided.set()
        while self.thread.is_alive():  # short steps: a signal still reaches the caller
            self.thread.join(0.2)
        return self.count is not None and self.count >= 0

    def abandon(self) -> None:
        """The loop ended otherwise (a signal, an error): write nothing (waits at most 5 s)."""
        if not self.decided.is_set():
            self.same = False
            self.decided.set()
        self.thread.join(5)
