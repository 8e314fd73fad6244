"""Static test selection: which test files a change can affect, and why.

Selected: test files whose transitive imports reach a changed module, changed or new
test files, tests under a changed `conftest.py`, and tests that failed last time.
Anything the graph cannot prove unaffected widens the selection: a dynamic import
reachable from a test, or a changed non-Python file that no rule covers.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import PurePosixPath

from ect.changes import Change
from ect.config import Config
from ect.graph import Graph


@dataclass
class Selection:
    """The selected test files with their reasons, or a run-everything verdict."""

    tests: dict[str, list[str]] = field(default_factory=dict)
    run_all_reasons: list[str] = field(default_factory=list)
    total_test_files: int = 0
    notes: list[str] = field(default_factory=list)
    # test file -> the node ids to run in it (fingerprints); a file not listed runs whole
    nodes: dict[str, list[str]] = field(default_factory=dict)
    fingerprinted: bool = False

    def pytest_args(self) -> list[str] | None:
        """What to hand pytest: None for the whole suite, else files and node ids."""
        if self.run_all:
            return None
        args: list[str] = []
        for test in sorted(self.tests):
            args.extend(self.nodes.get(test, [test]))
        return args

    @property
    def run_all(self) -> bool:
        return bool(self.run_all_reasons)

    def add(self, test: str, reason: str) -> None:
        reasons = self.tests.setdefault(test, [])
        if reason not in reasons:
            reasons.append(reason)


def matches(path: str, globs: list[str]) -> str | None:
    """The first glob (fnmatch on the repo-relative path) that `path` matches."""
    for glob in globs:
        if fnmatch(path, glob) or (glob.endswith("/**") and path.startswith(glob[:-2])):
            return glob
    return None


def is_test_file(path: str, cfg: Config) -> bool:
    """A file pytest would collect as a test module under the configured test paths."""
    return _is_test_file(path, tuple(cfg.test_patterns), tuple(cfg.test_paths))


@functools.lru_cache(maxsize=65536)
def _is_test_file(path: str, patterns: tuple[str, ...], test_paths: tuple[str, ...]) -> bool:
    name = path.rpartition("/")[2]
    if not name.endswith(".py") or name == "conftest.py":
        return False
    if not any(fnmatch(name, pat) for pat in patterns):
        return False
    return any(tp in (".", "") or path == tp or path.startswith(tp.rstrip("/") + "/") for tp in test_paths)


def _under(path: str, directory: str) -> bool:
    return directory in ("", ".") or path.startswith(directory + "/")


def select(
    cfg: Config, graph: Graph, changes: list[Change], last_failed: dict[str, list[str]] | None = None
) -> Selection:
    """Select test files for `changes` using the import graph."""
    sel = Selection()
    tests = [f for f in graph.files if is_test_file(f, cfg)]
    sel.total_test_files = len(tests)
    seeds: dict[str, str] = {}  # file -> why it is a starting point

    for change in changes:
        path = change.path
        what = {"A": "new", "D": "deleted", "R": f"renamed from {change.old_path}", "M": "modified"}[
            change.status
        ]
        rule = matches(path, cfg.run_all)
        if rule is not None:
            sel.run_all_reasons.append(f"{path} ({what}) matches run-everything rule '{rule}'")
            continue
        if path.endswith(".py"):
            if matches(path, cfg.exclude) is not None:
                sel.notes.append(f"{path}: excluded by config")
                continue
            if is_test_file(path, cfg) and not change.deleted:
                sel.add(path, "new test file" if change.status == "A" else f"test file {what}")
            if PurePosixPath(path).name == "conftest.py":
                directory = str(PurePosixPath(path).parent)
                for t in tests:
                    if _under(t, directory):
                        sel.add(t, f"under {path} ({what})")
            seeds[path] = f"{path} ({what})"
            if change.old_path and change.old_path.endswith(".py"):
                seeds[change.old_path] = f"{change.old_path} (renamed to {path})"
            continue
        handled = _data_rule(cfg, path, what, tests, sel, seeds)
        if handled:
            continue
        glob = matches(path, cfg.ignore)
        if glob is not None:
            sel.notes.append(f"{path}: ignored (matches '{glob}')")
            continue
        sel.run_all_reasons.append(
            f"{path} ({what}) is not Python and no data_deps rule says which tests read it"
        )

    if seeds and graph.dynamic_files:
        for f in graph.dynamic_files:
            if f not in seeds:
                note = graph.infos[f].dynamic[0]
                seeds[f] = f"{f} (dynamic import at {note}: may load any changed module)"

    _walk(cfg, graph, seeds, tests, sel)

    for test_file, node_ids in (last_failed or {}).items():
        if test_file in graph.files and node_ids:
            more = f" (+{len(node_ids) - 1} more)" if len(node_ids) > 1 else ""
            sel.add(test_file, f"failed last time: {node_ids[0]}{more}")
    return sel


def _data_rule(
    cfg: Config, path: str, what: str, tests: list[str], sel: Selection, seeds: dict[str, str]
) -> bool:
    hit = False
    for glob, targets in cfg.data_deps.items():
        if not fnmatch(path, glob):
            continue
        hit = True
        for target in targets:
            if target == "*":
                sel.run_all_reasons.append(f"{path} ({what}): data_deps '{glob}' says run everything")
            elif target.endswith(".py") and not any(ch in target for ch in "*?[") and target not in tests:
                seeds[target] = f"{path} ({what}, data of {target} per data_deps '{glob}')"
            else:
                for t in tests:
                    if fnmatch(t, target):
                        sel.add(t, f"reads {path} ({what}) per data_deps '{glob}'")
    return hit


def _walk(cfg: Config, graph: Graph, seeds: dict[str, str], tests: list[str], sel: Selection) -> None:
    """Breadth-first over reverse edges from the seeds; explain each test by its chain."""
    parent: dict[str, tuple[str | None, str]] = {s: (None, why) for s, why in seeds.items()}
    queue = deque(seeds)
    while queue:
        current = queue.popleft()
        if is_test_file(current, cfg) and current not in seeds:
            sel.add(current, _chain(current, parent))
        if PurePosixPath(current).name == "conftest.py" and current not in seeds:
            directory = str(PurePosixPath(current).parent)
            why = f"under {current}, which {_chain(current, parent)}"
            for t in tests:
                if _under(t, directory):
                    sel.add(t, why)
        for dependant, how in graph.dependants(current).items():
            if dependant not in parent:
                parent[dependant] = (current, how)
                queue.append(dependant)


def _chain(node: str, parent: dict[str, tuple[str | None, str]]) -> str:
    """`imports a.util -> a/util.py imports a.core -> a/core.py (modified)` for `node`."""
    hops = []
    current: str | None = node
    while current is not None:
        prev, how = parent[current]
        if prev is None:
            hops.append(how)
            break
        hops.append(how if current == node else f"{current} {how}")
        current = prev
    return " → ".join(hops)
