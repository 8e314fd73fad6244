"""The compile step: byte-compile in-process, then ruff and mypy when enabled.

Each step is timed; errors are `path:line:col: message`, grouped by step.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ect.config import Config
from ect.state import read_json, write_json

COMPILED_CACHE = "compiled.json"
COMPILED_CACHE_VERSION = 1
COMPILED_CACHE_KEEP = 20_000
COMPILED_CACHE_MIN_FILES = 16  # fewer compile faster than the cache file reads


@dataclass(frozen=True)
class CompileError:
    """One finding of a compile step."""

    step: str
    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


@dataclass
class CompileReport:
    """All steps' errors, per-step durations, and the parsed trees of the files that compiled."""

    errors: list[CompileError] = field(default_factory=list)
    durations_ms: dict[str, float] = field(default_factory=dict)
    trees: dict[str, ast.Module] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class CompiledCache:
    """The content digests of sources that byte-compiled cleanly with this interpreter
    (`<state>/compiled.json`): a run over every file (`--all`) compiles only what is new.
    The same bytes always compile the same way on the same Python, so a hit is as good as compiling."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.key = [COMPILED_CACHE_VERSION, sys.version]
        data = read_json(path) if path is not None else None
        ok = data.get("ok") if isinstance(data, dict) and data.get("key") == self.key else None
        self.ok: dict[str, None] = (
            dict.fromkeys(x for x in ok if isinstance(x, str)) if isinstance(ok, list) else {}
        )
        self.changed = False

    def __contains__(self, digest: str) -> bool:
        return digest in self.ok

    def add(self, digest: str) -> None:
        self.ok[digest] = None  # newest last: the oldest are dropped first
        self.changed = True

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        kept = list(self.ok)[-COMPILED_CACHE_KEEP:]
        with contextlib.suppress(OSError):  # a read-only state: compiled again next time
            write_json(self.path, {"key": self.key, "ok": kept})


def byte_compile(
    root: Path, rel_path: str, cache: CompiledCache | None = None
) -> tuple[ast.Module | None, CompileError | None]:
    """Parse and compile one file exactly as the interpreter would import it (no tree: `cache`
    knew these bytes compile)."""
    try:
        source = (root / rel_path).read_bytes()
    except OSError as exc:
        return None, CompileError("compile", rel_path, 1, 1, f"cannot read: {exc.strerror}")
    digest = hashlib.blake2b(source, digest_size=16).hexdigest() if cache is not None else ""
    if cache is not None and digest in cache:
        return None, None
    try:
        tree = ast.parse(source, rel_path)
        compile(tree, rel_path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = exc.offset or 1
        name = type(exc).__name__
        return None, CompileError("compile", rel_path, line, max(col, 1), f"{name}: {exc.msg}")
    except (ValueError, UnicodeDecodeError) as exc:  # null bytes, undecodable source
        return None, CompileError("compile", rel_path, 1, 1, f"{type(exc).__name__}: {exc}")
    except (RecursionError, MemoryError) as exc:  # absurdly deep nesting: the interpreter fails too
        return None, CompileError("compile", rel_path, 1, 1, f"{type(exc).__name__}: too deeply nested")
    if cache is not None:
        cache.add(digest)
    return tree, None


def _tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def run_ruff(root: Path, files: list[str], extra: list[str]) -> tuple[list[CompileError], str | None]:
    """`ruff check` once over all files, JSON output."""
    exe = _tool("ruff")
    if exe is None:
        return [], "ruff not installed"
    cmd = [
        exe,
        "check",
        "--output-format=json",
        "--no-fix",
        "--force-exclude",
        "--quiet",
        *extra,
        "--",
        *files,
    ]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        first = (proc.stderr.strip().splitlines() or ["exit code " + str(proc.returncode)])[0]
        return [CompileError("ruff", "<ruff>", 1, 1, f"ruff failed: {first}")], None
    try:
        findings = json.loads(proc.stdout or "[]")
    except ValueError:
        return [CompileError("ruff", "<ruff>", 1, 1, "ruff printed invalid JSON")], None
    errors = []
    for item in findings:
        path = os.path.relpath(item.get("filename", "?"), root)
        loc = item.get("location") or {}
        code = item.get("code") or ""
        message = f"{code} {item.get('message', '')}".strip()
        errors.append(
            CompileError("ruff", Path(path).as_posix(), loc.get("row", 1), loc.get("column", 1), message)
        )
    return errors, None


def run_mypy(root: Path, files: list[str], extra: list[str]) -> tuple[list[CompileError], str | None]:
    """mypy over the changed files (uses the project's own mypy config)."""
    exe = _tool("mypy")
    if exe is None:
        return [], "mypy not installed"
    cmd = [
        exe,
        "--show-column-numbers",
        "--no-error-summary",
        "--no-pretty",
        "--hide-error-context",
        *extra,
        "--",
        *files,
    ]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    errors = []
    for line in proc.stdout.splitlines():
        parts = line.split(":", 4)
        if len(parts) == 5 and parts[1].isdigit() and parts[3].strip() == "error":
            path, row, col, _, message = parts
            errors.append(
                CompileError("mypy", Path(path).as_posix(), int(row), int(col or 1), message.strip())
            )
    if proc.returncode not in (0, 1) and not errors:
        first = (proc.stderr.strip().splitlines() or [proc.stdout.strip()])[0]
        errors.append(CompileError("mypy", "<mypy>", 1, 1, f"mypy failed: {first}"))
    return errors, None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def run_compile(root: Path, cfg: Config, files: list[str], use_cache: bool = True) -> CompileReport:
    """Compile `files` (repo-relative .py paths that exist): byte-compile (what compiled before is
    not compiled again, `CompiledCache`), then ruff, then mypy."""
    report = CompileReport()
    started = time.perf_counter()
    # a few changed files compile in a few ms: the cache (read on every use) is for runs over many
    many = use_cache and len(files) >= COMPILED_CACHE_MIN_FILES
    cache = CompiledCache(cfg.state_path / COMPILED_CACHE if many else None)
    limit = getattr(cfg, "max_file_size", 0) or None
    for rel in list(files):
        size = _size(root / rel)
        if limit is not None and size > limit:  # a huge (generated) file: not compiled or linted
            report.skipped[f"compile {rel}"] = (
                f"{size / 1e6:.1f} MB is over max_file_size ({limit / 1e6:g} MB); tests reaching it still run"
            )
            files = [f for f in files if f != rel]
            continue
        tree, error = byte_compile(root, rel, cache)
        if error is not None:
            report.errors.append(error)
        elif tree is not None:
            report.trees[rel] = tree
    cache.save()
    report.durations_ms["compile"] = (time.perf_counter() - started) * 1000
    if files and cfg.ruff:
        started = time.perf_counter()
        errors, skipped = run_ruff(root, files, cfg.ruff_args)
        report.errors.extend(errors)
        if skipped:
            report.skipped["ruff"] = skipped
        report.durations_ms["ruff"] = (time.perf_counter() - started) * 1000
    if files and cfg.mypy and not report.errors:
        started = time.perf_counter()
        errors, skipped = run_mypy(root, files, cfg.mypy_args)
        report.errors.extend(errors)
        if skipped:
            report.skipped["mypy"] = skipped
        report.durations_ms["mypy"] = (time.perf_counter() - started) * 1000
    return report
