"""The fix engine: failures in, verified and ranked fixes out."""

from __future__ import annotations

import difflib
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ect import events
from ect.config import Config
from ect.fix import candidates as cand
from ect.fix.failures import Failure, from_compile_error, from_test_records, read_records
from ect.fix.scratch import Scratch
from ect.fix.settings import FixSettings, load_settings
from ect.fix.verify import Verifier

if TYPE_CHECKING:
    from ect.changes import Scope
    from ect.fix.model_hook import ModelSource
    from ect.fix.warm_pytest import WarmPytest
    from ect.loop import LoopResult
    from ect.models.index import SymbolIndex
    from ect.runner import PytestRunner

CAPTURE_PLUGIN = "ect.fix.capture_plugin"


@dataclass
class Fix:
    """A verified fix."""

    title: str
    path: str
    new_text: str
    old_text: str
    score: float
    origin: str
    verify_ms: float

    @property
    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.old_text.splitlines(True),
                self.new_text.splitlines(True),
                f"a/{self.path}",
                f"b/{self.path}",
                n=1,
            )
        )


@dataclass
class FixResult:
    failure: Failure
    fixes: list[Fix] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (title, why)
    tried: int = 0
    duration_ms: float = 0.0
    first_fix_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        f = self.failure
        return {
            "failure": {
                "kind": f.kind,
                "path": f.path,
                "line": f.line,
                "message": f.message,
                "name": f.name,
                "step": f.step,
                "tests": f.tests,
            },
            "fixes": [
                {
                    "title": x.title,
                    "path": x.path,
                    "score": round(x.score, 2),
                    "origin": x.origin,
                    "diff": x.diff,
                    "verify_ms": round(x.verify_ms, 1),
                }
                for x in self.fixes
            ],
            "rejected": [{"title": t, "why": w} for t, w in self.rejected],
            "candidates_tried": self.tried,
            "duration_ms": round(self.duration_ms, 1),
            "first_fix_ms": None if self.first_fix_ms is None else round(self.first_fix_ms, 1),
        }


def spread(tests: list[str], limit: int) -> list[str]:
    """At most `limit` node ids, taken round-robin over their test files (every failing file is covered)."""
    if len(tests) <= limit:
        return list(tests)
    by_file: dict[str, list[str]] = {}
    for t in tests:
        by_file.setdefault(t.split("::")[0], []).append(t)
    out: list[str] = []
    queues = list(by_file.values())
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def closest_tests(path: str, test_files: list[str], limit: int) -> list[str]:
    """The test files most likely to exercise `path`: those named after it first."""
    stem = Path(path).stem.lstrip("_")
    named = [t for t in test_files if stem and stem in Path(t).stem]
    rest = [t for t in test_files if t not in named]
    return (named + rest)[:limit]


MAX_SCAN_BYTES = 8 * 1024 * 1024  # files larger than this are not scanned for moved imports
_IMPORT_START = re.compile(r"^[ \t]*(?:from[ \t]+[.\w]+[ \t]+import\b|import[ \t]+\w)", re.M)


def import_statements(source: str) -> list[tuple[int, str]]:
    """(1-based line, dedented text) of each import statement, found without parsing the whole file
    (linear in the size; continuation lines in parentheses or after a backslash are joined)."""
    out: list[tuple[int, str]] = []
    lines = source.split("\n")
    first, at = 0, 0
    for m in _IMPORT_START.finditer(source):
        first += source.count("\n", at, m.start())
        at = m.start()
        text = lines[first].strip()
        i = first
        while text.count("(") > text.count(")") or text.endswith("\\"):
            if i + 1 >= len(lines) or i - first >= 200:
                break
            i += 1
            text = text.rstrip("\\") + " " + lines[i].strip()
        out.append((first + 1, text))
    return out


def _absolute_from(file_module: str, is_package: bool, module: str | None, level: int) -> str:
    if not level:
        return module or ""
    parts = file_module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: max(0, len(parts) - (level - 1))]
    base = ".".join(parts)
    return f"{base}.{module}" if base and module else (base or module or "")


def scan_moved(root: Path, paths: list[str], settings: FixSettings) -> list[Failure]:
    """Static findings: imports of paths that the config declares moved or deprecated.

    Bounded: only import statements are parsed (found by a linear scan), files over MAX_SCAN_BYTES and
    files that mention none of the declared modules are skipped."""
    if not settings.renames:
        return []
    import ast

    from ect.models.index import module_name_for

    heads = {key.split(".")[0] for key in settings.renames}
    out: list[Failure] = []
    for rel in paths:
        try:
            if (root / rel).stat().st_size > MAX_SCAN_BYTES:
                continue
            source = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not any(h in source for h in heads) and "from ." not in source:
            continue
        module = module_name_for(root / rel, root)
        for line, text in import_statements(source):
            try:
                node = ast.parse(text).body[0]
            except (SyntaxError, ValueError, IndexError):
                continue
            full: list[str] = []
            if isinstance(node, ast.ImportFrom) and all(a.name != "*" for a in node.names):
                base = _absolute_from(module, rel.endswith("__init__.py"), node.module, node.level)
                full = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                full = [a.name for a in node.names]
            for path in full:
                if path in settings.renames:
                    kind = "moved" if path in settings.moved else "deprecated"
                    out.append(
                        Failure(
                            "moved",
                            rel,
                            line,
                            f"`{path}` is {kind}: use `{settings.renames[path]}`",
                            path,
                            step="config",
                            extra={"severity": kind},
                        )
                    )
    return out


class FixEngine:
    """Finds failures with the loop and proposes fixes verified in a scratch copy."""

    def __init__(
        self, root: Path, cfg: Config, settings: FixSettings | None = None, index: SymbolIndex | None = None
    ) -> None:
        self.root = root
        self.cfg = cfg
        self.settings = settings or load_settings(cfg)
        self.scratch = Scratch(root, cfg.state_dir)
        self.cancelled = threading.Event()
        self.verifier = Verifier(root, cfg, self.scratch, self.settings.test_timeout_s, self.cancelled)
        self._index = index
        self._lock = threading.Lock()
        self.pytest_runner: PytestRunner | None = None  # the loop's test runner (None: a cold subprocess)
        self.last_records: list[dict[str, Any]] = []  # the capture plugin's records of the last loop run
        # the code model already loaded in this process (the language server's), shared with it; None:
        # the model hook loads one itself when a model is trained
        self.model_source: ModelSource | None = None

    def use_warm_pytest(self, warm: WarmPytest | None = None) -> WarmPytest:
        """Verify candidates through a warm forking pytest process (started now if not given)."""
        from ect.fix.warm_pytest import WarmPytest

        self.verifier.warm = warm or WarmPytest(self.root, self.cfg)
        self.pytest_runner = self.verifier.warm.run_pytest
        return self.verifier.warm

    def close(self) -> None:
        if self.verifier.warm is not None:
            self.verifier.warm.stop()

    # -- inputs
    def index(self) -> SymbolIndex | None:
        if self._index is None:
            try:
                from ect.models.index import SymbolIndex
            except ImportError:
                return None
            self._index = SymbolIndex.build(self.root, self.cfg.state_path)
        return self._index

    @property
    def current_index(self) -> SymbolIndex | None:
        """The index built last (None before the first build); never builds."""
        return self._index

    def refresh_index(self, max_file_bytes: int | None = None) -> None:
        """Rebuild the index now (incrementally, from its cache) and swap it in; readers never see None.

        `max_file_bytes`: leave changed files larger than this as they were (a fast, bounded build)."""
        try:
            from ect.models.index import SymbolIndex
        except ImportError:
            return
        self._index = SymbolIndex.build(self.root, self.cfg.state_path, max_file_bytes=max_file_bytes)

    def loop_config(self) -> Config:
        """The project config with the failure-capturing pytest plugin added."""
        return replace(self.cfg, pytest_args=[*self.cfg.pytest_args, "-p", CAPTURE_PLUGIN])

    def failures_from(self, result: LoopResult, root: Path | None = None) -> list[Failure]:
        """Failures found by a loop run made with `loop_config()` (reads the capture plugin's records)."""
        root = root or self.root
        found: list[Failure] = []
        seen: set[tuple[str, str, str]] = set()
        for e in result.compile_errors:  # one failure per undefined name and file, at its first use
            f = from_compile_error(e.step, e.path, e.line, e.message)
            if f.kind != "other" and (f.kind, f.path, f.name) in seen:
                continue
            seen.add((f.kind, f.path, f.name))
            found.append(f)
        records = read_records(self.cfg.state_path / f"results-{os.getpid()}.json")
        self.last_records = records
        found += from_test_records(records, root)
        paths = [c.path for c in result.changes if c.path.endswith(".py") and not c.deleted]
        at = {(f.path, f.line) for f in found}
        found += [f for f in scan_moved(root, paths, self.settings) if (f.path, f.line) not in at]
        return found

    def find_failures(self, scope: Scope, trigger: str = "fix") -> tuple[LoopResult, list[Failure]]:
        from ect.loop import run_loop

        result = run_loop(
            self.root,
            self.loop_config(),
            scope,
            trigger=trigger,
            stream=False,
            pytest_runner=self.pytest_runner,
        )
        return result, self.failures_from(result)

    def tests_for(self, path: str) -> list[str]:
        """Test files the import graph selects for a change to `path` (used when no test failed yet)."""
        from ect import graph as graph_mod
        from ect.changes import Change
        from ect.selection import select

        graph, _ = graph_mod.build(self.root, self.cfg)
        sel = select(self.cfg, graph, [Change(path, "M")], {})
        return [] if sel.run_all else sorted(sel.tests)

    # -- fixing
    def candidates(self, failure: Failure, source: str) -> list[cand.Candidate]:
        ctx = cand.file_context(self.root, failure.path, source)
        found = cand.generate(failure, ctx, self.index(), self.settings)
        if self.settings.model and failure.kind != "moved":
            found += model_candidates(self.cfg, self.root, failure, ctx, self.index(), self.model_source)
        found.sort(key=lambda c: -c.score)
        return found[: self.settings.max_candidates]

    def fix(
        self, failure: Failure, overrides: dict[str, str] | None = None, all_fixes: bool = True
    ) -> FixResult:
        """Verified fixes for one failure, best first (stops at the first when `all_fixes` is false)."""
        started = time.perf_counter()
        res = FixResult(failure)
        with self._lock, self.scratch.locked():
            self.scratch.sync(overrides)
            try:
                source = self.scratch.read(failure.path)
            except (OSError, UnicodeDecodeError):
                return res
            full = list(failure.tests)
            if not full and failure.step != "test":
                full = self.tests_for(failure.path)  # no test ran yet: every test the change selects
            quick = (
                spread(full, self.settings.verify_tests)
                if failure.tests
                else closest_tests(failure.path, full, self.settings.verify_files)
            )
            tried_texts: set[str] = set()
            for c in self.candidates(failure, source):
                if self.cancelled.is_set():
                    break
                candidate_text = c.text()
                if candidate_text is None or candidate_text == source or candidate_text in tried_texts:
                    continue
                tried_texts.add(candidate_text)
                res.tried += 1
                verdict = self.verifier.verify(failure, c.path, candidate_text, quick, full)
                if not verdict.ok:
                    res.rejected.append((c.title, verdict.reason))
                    continue
                text = verdict.text or candidate_text
                if any(f.new_text == text for f in res.fixes):
                    continue
                res.fixes.append(Fix(c.title, c.path, text, source, c.score, c.origin, verdict.duration_ms))
                if res.first_fix_ms is None:
                    res.first_fix_ms = (time.perf_counter() - started) * 1000
                if not all_fixes or len(res.fixes) >= self.settings.max_shown:
                    break
        res.duration_ms = (time.perf_counter() - started) * 1000
        return res

    def cancel(self) -> None:
        self.cancelled.set()
        self.verifier.kill()

    # -- telemetry and writing
    def record(self, kind: str, res: FixResult, fix: Fix | None = None, source: str = "cli") -> None:
        events.record(
            self.cfg.state_path,
            kind,
            source=source,
            repo=self.root.name,
            duration_ms=round(res.duration_ms, 3),
            outcome="verified" if res.fixes else "none",
            fault=res.failure.kind,
            path=res.failure.path,
            line=res.failure.line,
            fixes=len(res.fixes),
            tried=res.tried,
            title=fix.title if fix else None,
            origin=fix.origin if fix else None,
            rank=(res.fixes.index(fix) + 1) if fix and fix in res.fixes else None,
        )

    def apply(self, fix: Fix) -> bool:
        """Write the fix to the working tree; False when the file changed since it was verified."""
        path = self.root / fix.path
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        if current != fix.old_text:
            return False
        tmp = path.with_name(f".{path.name}.ect-fix.tmp")
        tmp.write_text(fix.new_text, encoding="utf-8")
        os.replace(tmp, path)
        return True


def model_candidates(
    cfg: Config,
    root: Path,
    failure: Failure,
    ctx: cand.FileContext,
    index: SymbolIndex | None,
    source: ModelSource | None = None,
) -> list[cand.Candidate]:
    """Regenerate the failing line with the code model (when one is trained); [] otherwise."""
    from ect.fix.model_hook import regenerate_line

    return regenerate_line(cfg, root, failure, ctx, index, source)
