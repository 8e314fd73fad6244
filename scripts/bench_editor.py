#!/usr/bin/env python
"""Editor benchmarks for `ect lsp` and `ect fix`.

  completion   completion request -> response latency over stdio (a real `ect lsp` process)
  diagnostics  save -> diagnostics published, for a one-test change
  fixes        faults injected into a real project (removed import, misspelled internal call, moved
               symbol's old path, renamed keyword): top-1 / top-3 correct, unverified fixes shown,
               time to the first verified fix

Run it with a Python that has ect and the target project's test dependencies, e.g.
  python scripts/bench_editor.py all --repo /tmp/jinja
The target repository is modified while `fixes` runs and restored afterwards (a clean git work tree is
required).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import queue
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- a minimal LSP client over stdio


class StdioClient:
    """Talks JSON-RPC to `ect lsp` over pipes; responses and notifications are timestamped on arrival."""

    def __init__(self, repo: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ect", "lsp"],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._id = 0
        self._responses: dict[int, tuple[float, dict[str, Any]]] = {}
        self._cond = threading.Condition()
        self.notifications: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _send(self, msg: dict[str, Any]) -> None:
        body = json.dumps(msg).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while True:
                line = out.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            msg = json.loads(out.read(length))
            now = time.perf_counter()
            if "method" in msg and "id" in msg:  # a request from the server: answer null
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif "method" in msg:
                self.notifications.put((now, msg))
            else:
                with self._cond:
                    self._responses[int(msg["id"])] = (now, msg)
                    self._cond.notify_all()

    def request(self, method: str, params: Any, timeout: float = 120) -> tuple[Any, float]:
        """(result, latency in ms)."""
        self._id += 1
        rid = self._id
        start = time.perf_counter()
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._responses, timeout):
                raise TimeoutError(f"{method}: no response in {timeout}s")
            at, msg = self._responses.pop(rid)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result"), (at - start) * 1000

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait(self, method: str, pred: Callable[[dict[str, Any]], bool], timeout: float) -> tuple[float, Any]:
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no {method} in {timeout}s")
            try:
                at, msg = self.notifications.get(timeout=left)
            except queue.Empty:
                continue
            if msg.get("method") == method and pred(msg.get("params") or {}):
                return at, msg["params"]

    def start(self, repo: Path) -> None:
        self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": repo.as_uri(),
                "capabilities": {},
                "workspaceFolders": [{"uri": repo.as_uri(), "name": repo.name}],
            },
        )
        self.notify("initialized", {})

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=30)
            self.notify("exit", None)
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------- completion latency


def package_files(repo: Path) -> list[Path]:
    out = []
    for base in (repo / "src", repo):
        if base.is_dir():
            for p in sorted(base.rglob("*.py")):
                rel = p.relative_to(repo).as_posix()
                if (
                    any(
                        part.startswith(".") or part in ("tests", "docs", "scripts", "examples", "misc")
                        for part in Path(rel).parts[:-1]
                    )
                    or p.name.startswith("test_")
                    or p.name == "conftest.py"
                ):
                    continue
                if base == repo and rel.startswith("src/"):
                    continue
                out.append(p)
            if base == repo / "src":
                break
    return out


_ATTR_USE = re.compile(r"\b(self|[A-Za-z_]\w*)\.([A-Za-z_]\w*)")


def completion_points(repo: Path, n: int, rng: random.Random) -> list[tuple[Path, int, int, str]]:
    """(file, line, column after the dot, expected member) for `module.attr` / `self.attr` uses."""
    points = []
    for path in package_files(repo):
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        modules = {
            a.asname or a.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level
            for a in node.names
        } | {"self"}
        for i, line in enumerate(text.splitlines()):
            if line.lstrip().startswith(("#", "import ", "from ")):
                continue
            for m in _ATTR_USE.finditer(line):
                if m.group(1) in modules and not m.group(2).startswith("__"):
                    points.append((path, i, m.start(2), m.group(2)))
    rng.shuffle(points)
    return points[:n]


def bench_completion(repo: Path, n: int) -> dict[str, Any]:
    rng = random.Random(1)
    points = completion_points(repo, n, rng)
    if not points:
        raise SystemExit(f"no completion points found in {repo}")
    from ect.config import load_config
    from ect.lsp.model_api import trained

    expect_model = trained(load_config(repo))
    client = StdioClient(repo)
    opened: set[Path] = set()
    try:
        client.start(repo)
        lat: list[float] = []
        hits = 0
        model = "index"
        t_ready = time.perf_counter()
        first = points[0]
        while True:  # warm-up: wait for the background index
            if first[0] not in opened:
                client.notify(
                    "textDocument/didOpen",
                    {
                        "textDocument": {
                            "uri": first[0].as_uri(),
                            "languageId": "python",
                            "version": 1,
                            "text": first[0].read_text(),
                        }
                    },
                )
                opened.add(first[0])
            res, _ = client.request(
                "textDocument/completion",
                {
                    "textDocument": {"uri": first[0].as_uri()},
                    "position": {"line": first[1], "character": first[2]},
                },
            )
            items = (res or {}).get("items") or []
            from_model = any(str(i.get("detail", "")).startswith("ect model") for i in items)
            if items and (from_model or not expect_model):
                break
            if time.perf_counter() - t_ready > 180:
                if items:
                    print("warning: a model is trained but the server never used it", file=sys.stderr)
                    break
                raise SystemExit("the server never returned completions")
            time.sleep(0.1)
        ready_ms = (time.perf_counter() - t_ready) * 1000
        for path, line, col, expected in points:
            if path not in opened:
                client.notify(
                    "textDocument/didOpen",
                    {
                        "textDocument": {
                            "uri": path.as_uri(),
                            "languageId": "python",
                            "version": 1,
                            "text": path.read_text(),
                        }
                    },
                )
                opened.add(path)
            res, ms = client.request(
                "textDocument/completion",
                {"textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": col}},
            )
            lat.append(ms)
            items = (res or {}).get("items") or []
            if any(i.get("label") == expected for i in items):
                hits += 1
            if items and str(items[0].get("detail", "")).startswith("ect model"):
                model = items[0]["detail"]
    finally:
        client.close()
    return {
        "requests": len(lat),
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "mean_ms": statistics.mean(lat),
        "member_found": hits / len(lat),
        "index_ready_ms": ready_ms,
        "model": model,
        "cpus": os.cpu_count(),
    }


# ---------------------------------------------------------------- save -> diagnostics

SAMPLE = {
    "pyproject.toml": """
        [project]
        name = "acme"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "acme/__init__.py": "",
    "acme/core.py": "def add(a, b):\n    return a + b\n\n\ndef scale(x, k=2):\n    return x * k\n",
    "acme/util.py": "from acme.core import add\n\n\ndef total(xs):\n    t = 0\n    for x in xs:\n"
    "        t = add(t, x)\n    return t\n",
    "tests/test_core.py": "from acme.core import add, scale\n\n\ndef test_add():\n"
    "    assert add(2, 3) == 5\n\n\ndef test_scale():\n    assert scale(3) == 6\n",
    "tests/test_util.py": "from acme.util import total\n\n\ndef test_total():\n"
    "    assert total([1, 2, 3]) == 6\n",
}


def make_sample(where: Path) -> Path:
    repo = where / "acme"
    for rel, text in SAMPLE.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "sample")
    return repo


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def first_test(path: Path) -> int:
    for i, line in enumerate(path.read_text().splitlines()):
        if re.match(r"def test_\w+\(", line):
            return i
    raise SystemExit(f"no top-level test function in {path}")


def bench_diagnostics(repo: Path, test_file: str, n: int) -> dict[str, Any]:
    path = repo / test_file
    original = path.read_text()
    lines = original.splitlines(True)
    at = first_test(path) + 1
    failing = "".join([*lines[:at], '    assert False, "bench"\n', *lines[at:]])
    uri = path.as_uri()
    client = StdioClient(repo)
    lat: list[float] = []
    published: list[int] = []
    try:
        client.start(repo)
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": original}},
        )
        for i in range(n + 1):
            text = failing if i % 2 == 0 else original
            path.write_text(text)
            client.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": i + 2}, "contentChanges": [{"text": text}]},
            )
            start = time.perf_counter()
            client.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
            want_error = i % 2 == 0

            def answered(p: dict[str, Any], want: bool = want_error) -> bool:
                return p.get("uri") == uri and bool(p.get("diagnostics")) == want

            at_t, params = client.wait("textDocument/publishDiagnostics", answered, 120)
            if i:  # the first save also warms the import graph cache
                lat.append((at_t - start) * 1000)
                published.append(len(params["diagnostics"]))
    finally:
        path.write_text(original)
        client.close()
    return {
        "saves": len(lat),
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "mean_ms": statistics.mean(lat),
    }


# ---------------------------------------------------------------- fixes on injected faults


@dataclass
class Fault:
    kind: str
    path: str
    line: int
    text: str  # the broken file
    note: str
    moved: dict[str, str] = field(default_factory=dict)


def _misspell(name: str, rng: random.Random) -> str | None:
    inner = [
        i
        for i in range(1, len(name) - 2)
        if name[i] != name[i + 1] and name[i].isalpha() and name[i + 1].isalpha()
    ]
    if not inner:
        return None
    i = rng.choice(inner)
    return name[:i] + name[i + 1] + name[i] + name[i + 2 :]


def _replace_at(text: str, line: int, col: int, old: str, new: str) -> str | None:
    lines = text.splitlines(True)
    cur = lines[line - 1]
    if cur[col : col + len(old)] != old:
        return None
    lines[line - 1] = cur[:col] + new + cur[col + len(old) :]
    return "".join(lines)


def _module_of(repo: Path, path: Path) -> str:
    from ect.models.index import module_name_for

    return module_name_for(path, repo / "src" if (repo / "src").is_dir() else repo)


def _top_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    return [n for n in tree.body if isinstance(n, ast.ImportFrom) and not any(a.name == "*" for a in n.names)]


def _internal_from(node: ast.ImportFrom, package: str) -> bool:
    return bool(node.level) or (node.module or "").split(".")[0] == package


def _drop_alias(text: str, node: ast.ImportFrom, name: str, replacement: str | None = None) -> str | None:
    """Remove `name` from the import statement (the statement when it was alone), optionally adding a line."""
    import libcst as cst

    tree = cst.parse_module(text)
    hit = [False]

    class T(cst.CSTTransformer):
        def leave_SimpleStatementLine(
            self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
        ) -> Any:
            stmt = updated_node.body[0] if len(updated_node.body) == 1 else None
            if hit[0] or not isinstance(stmt, cst.ImportFrom) or isinstance(stmt.names, cst.ImportStar):
                return updated_node
            names = [a for a in stmt.names if cst.helpers.get_full_name_for_node(a.name) == name]
            mod = cst.helpers.get_full_name_for_node(stmt.module) if stmt.module else ""
            if not names or (mod or "") != (node.module or "") or len(stmt.relative) != node.level:
                return updated_node
            hit[0] = True
            rest = [a for a in stmt.names if a is not names[0]]
            extra = [cst.parse_statement(replacement)] if replacement else []
            if not rest:
                return cst.FlattenSentinel(extra) if extra else cst.RemoveFromParent()
            rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return cst.FlattenSentinel(
                [updated_node.with_changes(body=[stmt.with_changes(names=rest)]), *extra]
            )

    out = tree.visit(T()).code
    return out if hit[0] else None


def plan_faults(repo: Path, per_kind: int, rng: random.Random) -> list[Fault]:
    files = package_files(repo)
    package = _module_of(repo, files[0]).split(".")[0] if files else ""
    found: dict[str, list[Fault]] = {
        "removed-import": [],
        "misspelled-call": [],
        "moved-symbol": [],
        "renamed-keyword": [],
    }
    for path in files:
        rel = path.relative_to(repo).as_posix()
        text = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        module = _module_of(repo, path)
        internal_names: set[str] = set()
        defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        for node in _top_imports(tree):
            if not _internal_from(node, package):
                continue
            for a in node.names:
                internal_names.add(a.asname or a.name)
                if a.asname:
                    continue
                broken = _drop_alias(text, node, a.name)
                if broken:
                    found["removed-import"].append(
                        Fault(
                            "removed-import",
                            rel,
                            node.lineno,
                            broken,
                            f"removed `{a.name}` from line {node.lineno}",
                        )
                    )
                parts = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
                absmod = (
                    ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level
                    else (node.module or "")
                )
                old = f"{package}._ect_moved"
                moved_line = f"from {old} import {a.name}"
                broken = _drop_alias(text, node, a.name, moved_line)
                if broken and absmod:
                    found["moved-symbol"].append(
                        Fault(
                            "moved-symbol",
                            rel,
                            node.lineno,
                            broken,
                            f"`{a.name}` imported from old path {old}",
                            {f"{old}.{a.name}": f"{absmod}.{a.name}"},
                        )
                    )
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            fn = call.func
            name = None
            if isinstance(fn, ast.Name) and (fn.id in internal_names or fn.id in defs):
                name, line, col = fn.id, fn.lineno, fn.col_offset
            elif (
                isinstance(fn, ast.Attribute)
                and isinstance(fn.value, ast.Name)
                and (fn.value.id in internal_names or fn.value.id == "self")
                and fn.end_lineno == fn.lineno
            ):
                name, line, col = fn.attr, fn.end_lineno or fn.lineno, (fn.end_col_offset or 0) - len(fn.attr)
            if name and not name.startswith("__"):
                bad = _misspell(name, rng)
                broken = _replace_at(text, line, col, name, bad) if bad else None
                if broken:
                    found["misspelled-call"].append(
                        Fault("misspelled-call", rel, line, broken, f"`{name}` -> `{bad}` at line {line}")
                    )
            if name:
                for kw in call.keywords:
                    if kw.arg is None or kw.arg.startswith("_"):
                        continue
                    bad = _misspell(kw.arg, rng)
                    broken = _replace_at(text, kw.lineno, kw.col_offset, kw.arg, bad) if bad else None
                    if broken:
                        found["renamed-keyword"].append(
                            Fault(
                                "renamed-keyword",
                                rel,
                                kw.lineno,
                                broken,
                                f"`{name}({kw.arg}=...)` -> `{bad}=` at line {kw.lineno}",
                            )
                        )
    out = []
    for _kind, items in found.items():
        rng.shuffle(items)
        out.extend(items[: per_kind * 3])  # extra, since some faults are not caught by any test
    return out


def _norm_imports(text: str, module: str, is_pkg: bool) -> tuple[frozenset[Any], str]:
    """A file's meaning for comparison: its top-level imports as a set (absolute), the rest as an AST dump."""
    tree = ast.parse(text)
    imports: set[tuple[str, str | None, str | None]] = set()
    rest = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            imports |= {(base, a.name, a.asname) for a in node.names}
        elif isinstance(node, ast.Import):
            imports |= {(a.name, None, a.asname) for a in node.names}
        else:
            rest.append(ast.dump(node))
    return frozenset(imports), "\n".join(rest)


def _tests_pass(repo: Path, tests: list[str], timeout: float) -> bool:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--", *tests],
            cwd=repo,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def bench_fixes(repo: Path, per_kind: int, limit: int, verbose: bool) -> dict[str, Any]:
    from ect.changes import Scope
    from ect.config import load_config
    from ect.fix.engine import FixEngine

    if git(repo, "status", "--porcelain", "--untracked-files=no").strip():
        raise SystemExit(f"{repo}: the work tree has changes; the fixes benchmark needs a clean checkout")
    rng = random.Random(7)
    faults = plan_faults(repo, per_kind, rng)
    moved = {k: v for f in faults for k, v in f.moved.items()}
    pyproject = repo / "pyproject.toml"
    original_pyproject = pyproject.read_text() if pyproject.exists() else None
    table = (
        "\n[tool.ect.fix]\nmoved = {" + ", ".join(f'"{k}" = "{v}"' for k, v in sorted(moved.items())) + "}\n"
    )
    rows: list[dict[str, Any]] = []
    counted: dict[str, int] = {}
    engine = None
    try:
        pyproject.write_text((original_pyproject or "") + table)
        git(repo, "commit", "-q", "-am", "ect bench: moved-symbol config")  # a committed config is no change
        cfg = load_config(repo)
        engine = FixEngine(repo, cfg)
        engine.use_warm_pytest().start()  # as `ect fix` and `ect lsp` do
        engine.index()
        for fault in faults:
            if counted.get(fault.kind, 0) >= per_kind or len(rows) >= limit:
                continue
            path = repo / fault.path
            original = path.read_text()
            path.write_text(fault.text)
            (cfg.state_path / "last_failed.json").unlink(missing_ok=True)
            try:
                t0 = time.perf_counter()
                _loop, failures = engine.find_failures(Scope(mode="worktree"), trigger="bench")
                loop_ms = (time.perf_counter() - t0) * 1000
                mine = [f for f in failures if f.path == fault.path and f.kind != "other"] or [
                    f for f in failures if f.path == fault.path
                ]
                if not failures:  # no test catches this fault: nothing for any tool to fix
                    if verbose:
                        print(f"  skip (no test fails): {fault.kind} {fault.path}: {fault.note}")
                    continue
                if not mine:  # caught, but blamed on another file: counts as a miss
                    counted[fault.kind] = counted.get(fault.kind, 0) + 1
                    where = sorted({f"{f.path}:{f.line}" for f in failures})[:2]
                    rows.append(
                        {
                            "kind": fault.kind,
                            "path": fault.path,
                            "note": fault.note,
                            "failure": "elsewhere",
                            "step": "",
                            "shown": 0,
                            "tried": 0,
                            "top1": False,
                            "top3": False,
                            "unverified": 0,
                            "loop_ms": loop_ms,
                            "first_fix_ms": None,
                            "best": None,
                        }
                    )
                    if verbose:
                        print(
                            f"  {len(rows):3d} {fault.kind:16s} miss: failure reported at {where}, not in "
                            f"{fault.path}: {fault.note}",
                            flush=True,
                        )
                    continue
                failure = mine[0]
                t1 = time.perf_counter()
                engine.refresh_index()
                res = engine.fix(failure)
                fix_ms = (time.perf_counter() - t1) * 1000
                first_ms = (
                    None
                    if res.first_fix_ms is None
                    else res.first_fix_ms + (res.duration_ms and fix_ms - res.duration_ms)
                )
                module = _module_of(repo, path)
                want = _norm_imports(original, module, path.name == "__init__.py")
                correct = [
                    _norm_imports(fx.new_text, module, path.name == "__init__.py") == want for fx in res.fixes
                ]
                unverified = 0
                tests = failure.tests or engine.tests_for(failure.path)
                for fx in res.fixes:  # independent re-check in the real work tree
                    path.write_text(fx.new_text)
                    if not _tests_pass(repo, tests, 300):
                        unverified += 1
                    path.write_text(fault.text)
                counted[fault.kind] = counted.get(fault.kind, 0) + 1
                row = {
                    "kind": fault.kind,
                    "path": fault.path,
                    "note": fault.note,
                    "failure": failure.kind,
                    "step": failure.step,
                    "shown": len(res.fixes),
                    "tried": res.tried,
                    "top1": bool(correct[:1] and correct[0]),
                    "top3": any(correct[:3]),
                    "unverified": unverified,
                    "loop_ms": loop_ms,
                    "first_fix_ms": first_ms,
                    "best": res.fixes[0].title if res.fixes else None,
                }
                rows.append(row)
                if verbose:
                    print(
                        f"  {len(rows):3d} {fault.kind:16s} top1={row['top1']!s:5s} top3={row['top3']!s:5s} "
                        f"first={first_ms or float('nan'):7.0f}ms loop={loop_ms:6.0f}ms "
                        f"{fault.path}: {fault.note}"
                        f" -> {row['best']}" + ("" if res.fixes else f"  rejected: {res.rejected[:3]}"),
                        flush=True,
                    )
            finally:
                path.write_text(original)
    finally:
        if engine is not None:
            engine.close()
        git(repo, "reset", "-q", "--hard", "HEAD~1")
    firsts = [r["first_fix_ms"] for r in rows if r["first_fix_ms"] is not None]
    by_kind = {}
    for kind in sorted({r["kind"] for r in rows}):
        rs = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = {
            "faults": len(rs),
            "top1": sum(r["top1"] for r in rs) / len(rs),
            "top3": sum(r["top3"] for r in rs) / len(rs),
        }
    n = len(rows) or 1
    return {
        "faults": len(rows),
        "top1": sum(r["top1"] for r in rows) / n,
        "top3": sum(r["top3"] for r in rows) / n,
        "no_fix_shown": sum(1 for r in rows if not r["shown"]),
        "unverified_shown": sum(r["unverified"] for r in rows),
        "fixes_shown": sum(r["shown"] for r in rows),
        "median_first_fix_ms": statistics.median(firsts) if firsts else None,
        "median_loop_ms": statistics.median([r["loop_ms"] for r in rows]) if rows else None,
        "by_kind": by_kind,
        "rows": rows,
    }


# ---------------------------------------------------------------- main


# ---------------------------------------------------------------- the server a Neovim user keeps (issue 16)

BIG_FUNCS = 1000  # 4 lines each: a 4k-line module


def make_big_sample(where: Path) -> Path:
    """The sample plus a 4k-line module `acme/big.py` whose functions a test calls."""
    repo = where / "acme"
    for rel, text in SAMPLE.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
    big = "".join(f"def f_{i}(x):\n    y = x + {i}\n    return y\n\n" for i in range(BIG_FUNCS))
    (repo / "acme/big.py").write_text(big)
    (repo / "tests/test_big.py").write_text(
        "from acme import big\n\n\ndef test_big():\n    assert big.f_3(1) == 4\n"
    )
    (repo / "acme/user.py").write_text("from acme import big, core\n\n\ndef use(x):\n    return x\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "sample")
    return repo


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _open(client: StdioClient, path: Path, text: str | None = None) -> None:
    client.notify(
        "textDocument/didOpen",
        {
            "textDocument": {
                "uri": path.as_uri(),
                "languageId": "python",
                "version": 1,
                "text": path.read_text() if text is None else text,
            }
        },
    )


KEYSTROKE_MS = 150.0  # the typing speed _completion_latency simulates (about 80 words a minute)
PAUSE_S = 3.0  # how long the simulated user pauses after a member access that showed no model item


def _completion_latency(
    repo: Path, n: int, want_model: bool, keystroke_ms: float = KEYSTROKE_MS
) -> dict[str, Any]:
    """Type member accesses in acme/user.py one character every `keystroke_ms`, asking for completions at
    each keystroke as Neovim's built-in completion and nvim-cmp do: latency of every list (index items),
    how many lists carried a model item and how soon after the typing at that point began; memory."""
    user = repo / "acme/user.py"
    base = user.read_text()
    probes = ["big.f_12", "core.add", "big.f_27", "core.scale", "big.f_3"]
    client = StdioClient(repo)
    lat: list[float] = []
    model_items = 0
    first_model: list[float] = []  # per typing session: ms from its first keystroke to a model item
    sessions = 0
    after_pause: list[float] = []  # sessions that showed no model item while typing: ms to it after a pause
    pause_lat: list[float] = []
    version = [1]

    def edit(lines: list[str]) -> str:
        text = base + "\n" + "\n".join(lines) + "\n"
        version[0] += 1
        client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": user.as_uri(), "version": version[0]},
                "contentChanges": [{"text": text}],
            },
        )
        return text

    def ask(line: int, col: int) -> tuple[list[dict[str, Any]], float]:
        res, ms = client.request(
            "textDocument/completion",
            {"textDocument": {"uri": user.as_uri()}, "position": {"line": line, "character": col}},
        )
        return (res or {}).get("items") or [], ms

    def is_model(items: list[dict[str, Any]]) -> bool:
        return any(str(it.get("detail", "")).startswith("ect model") for it in items)

    try:
        client.start(repo)
        _open(client, user, base + "\ncore.\n")
        first_line = base.count("\n") + 1
        t0 = time.perf_counter()
        while True:  # the background index (and the model, when one is trained: until it answers)
            items, _ = ask(first_line, len("core."))
            if items and (not want_model or is_model(items) or time.perf_counter() - t0 > 150):
                break
            if time.perf_counter() - t0 > 300:
                raise SystemExit("the server never returned completions")
            time.sleep(0.2)
        typed: list[str] = []
        while len(lat) < n:  # one typing session per new line: no suggestion computed there before
            probe = probes[sessions % len(probes)]
            sessions += 1
            line = first_line + len(typed)
            typed.append("")
            began = time.perf_counter()
            seen = False
            for end in range(probe.index(".") + 1, len(probe) + 1):
                if len(lat) >= n:
                    break
                typed[-1] = probe[:end]
                edit(typed)
                items, ms = ask(line, end)
                lat.append(ms)
                if is_model(items):
                    model_items += 1
                    if not seen:
                        seen = True
                        first_model.append((time.perf_counter() - began) * 1000)
                time.sleep(max(0.0, keystroke_ms - ms) / 1000)
            if (
                want_model and not seen
            ):  # the user pauses: the list is asked for again (as the next key would)
                while time.perf_counter() - began < len(probe) * keystroke_ms / 1000 + PAUSE_S:
                    items, ms = ask(line, len(probe))
                    pause_lat.append(ms)
                    if is_model(items):
                        after_pause.append((time.perf_counter() - began) * 1000)
                        break
                    time.sleep(max(0.0, keystroke_ms - ms) / 1000)
        mem = rss_mb(client.proc.pid)
    finally:
        client.close()
    return {
        "requests": len(lat),
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "lists_with_a_model_item": model_items,
        "sessions": sessions,
        "sessions_with_a_model_item": len(first_model),
        "model_item_after_p50_ms": pct(first_model, 50),
        "model_item_after_p95_ms": pct(first_model, 95),
        "keystroke_ms": keystroke_ms,
        "sessions_with_a_model_item_after_a_pause": len(first_model) + len(after_pause),
        "model_item_with_pause_p50_ms": pct(first_model + after_pause, 50),
        "model_item_with_pause_p95_ms": pct(first_model + after_pause, 95),
        "pause_requests_p95_ms": pct(pause_lat, 95),
        "server_rss_mb": mem,
    }


def _save_to_diagnostics(repo: Path, n: int) -> dict[str, Any]:
    """Break a function of the 4k-line module, save: time until its diagnostics arrive (and clear)."""
    path = repo / "acme/big.py"
    original = path.read_text()
    broken = original.replace("    y = x + 3\n", "    y = x - 3\n", 1)
    uri = path.as_uri()
    client = StdioClient(repo)
    lat: list[float] = []
    try:
        client.start(repo)
        _open(client, path, original)
        for i in range(2 * n + 1):
            text = broken if i % 2 == 0 else original
            path.write_text(text)
            client.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": i + 2}, "contentChanges": [{"text": text}]},
            )
            start = time.perf_counter()
            client.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
            want = i % 2 == 0

            def answered(p: dict[str, Any], want: bool = want) -> bool:
                return p.get("uri") == uri and bool(p.get("diagnostics")) == want

            at, _ = client.wait("textDocument/publishDiagnostics", answered, 180)
            if i:
                lat.append((at - start) * 1000)
    finally:
        path.write_text(original)
        client.close()
    return {"saves": len(lat), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95)}


def _save_split(repo: Path, n: int) -> dict[str, Any]:
    """The same saves in this process through the server's parts (warm pytest, background indexer,
    diagnostics worker): how much of save -> diagnostics is pytest's run and how much is ect's own."""
    from ect.config import load_config
    from ect.fix.engine import FixEngine
    from ect.fix.warm_pytest import WarmPytest
    from ect.lsp.diagnose import Diagnoser, Run
    from ect.lsp.indexer import Indexer

    cfg = load_config(repo)
    engine = FixEngine(repo, cfg)
    warm = WarmPytest(repo, cfg)
    engine.use_warm_pytest(warm)
    warm.start()
    indexer = Indexer(engine)
    indexer.start()
    indexer.first.wait(120)
    runner = engine.pytest_runner
    spent: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return runner(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    engine.pytest_runner = timed
    done = threading.Event()
    published: list[Run] = []
    diagnoser = Diagnoser(
        engine,
        lambda run: (published.append(run), done.set()),
        warm=warm,
        timeout_s=60,
        refresh_index=indexer.request,
    )
    path = repo / "acme/big.py"
    original = path.read_text()
    broken = original.replace("    y = x + 3\n", "    y = x - 3\n", 1)
    total: list[float] = []
    tests: list[float] = []
    try:
        for i in range(2 * n + 1):
            path.write_text(broken if i % 2 == 0 else original)
            done.clear()
            spent.clear()
            t = time.perf_counter()
            diagnoser.schedule("acme/big.py")
            if not done.wait(180):
                raise SystemExit("save split: no diagnostics in 180 s")
            if i:
                total.append((time.perf_counter() - t) * 1000)
                tests.append(sum(spent) * 1000)
    finally:
        path.write_text(original)
        diagnoser.stop()
        indexer.stop()
        warm.stop()
    own = [a - b for a, b in zip(total, tests, strict=True)]
    return {
        "saves": len(total),
        "total_p50_ms": pct(total, 50),
        "pytest_p50_ms": pct(tests, 50),
        "ect_p50_ms": pct(own, 50),
    }


def _index_per_10k_lines(where: Path) -> dict[str, float]:
    from ect.models.index import SymbolIndex

    repo = where / "idx"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg/__init__.py").write_text("")
    body = "".join(
        f"class C{i}:\n    def m(self, x):\n        return x + {i}\n\n\n"
        f"def f_{i}(x):\n    return C{i}().m(x)\n\n\n"
        for i in range(1100)
    )
    (repo / "pkg/mod.py").write_text(body)
    lines = body.count("\n")
    t = time.perf_counter()
    SymbolIndex.build(repo, None)
    full = time.perf_counter() - t
    t = time.perf_counter()
    SymbolIndex.build(repo, None, max_file_bytes=64 * 1024)  # the server's first, bounded build
    fast = time.perf_counter() - t
    from ect.fix.engine import scan_moved
    from ect.fix.settings import FixSettings

    huge = "from acme.legacy import add\n" + "def g(x):\n    return x\n\n" * 20_000  # 60k lines
    (repo / "pkg/huge.py").write_text(huge)
    t = time.perf_counter()
    found = scan_moved(repo, ["pkg/huge.py"], FixSettings(moved={"acme.legacy.add": "acme.core.add"}))
    scan = time.perf_counter() - t
    assert len(found) == 1
    return {
        "lines": lines,
        "full_s_per_10k": full * 10_000 / lines,
        "bounded_first_build_s": fast,
        "moved_scan_60k_s": scan,
    }


EDITOR = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[2])
from bench_editor import StdioClient
repo = __import__("pathlib").Path(sys.argv[1])
c = StdioClient(repo)
c.start(repo)
core = repo / "acme/core.py"
text = core.read_text().replace("    return a + b", "    while True:\n        pass", 1)
core.write_text(text)
c.notify("textDocument/didOpen", {"textDocument": {"uri": core.as_uri(), "languageId": "python",
         "version": 1, "text": text}})
c.notify("textDocument/didSave", {"textDocument": {"uri": core.as_uri()}})
print(c.proc.pid, flush=True)
time.sleep(600)
"""


def _in_repo(repo: Path) -> list[int]:
    target = os.path.realpath(repo)
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and (cwd == target or cwd.startswith(target + os.sep)):
            out.append(int(entry))
    return out


def _left_after_kill(repo: Path) -> dict[str, Any]:
    """An editor process (with the server as its child) saves a change that hangs a test; kill -9 it."""
    editor = subprocess.Popen(
        [sys.executable, "-c", EDITOR, str(repo), str(Path(__file__).parent)],
        cwd=repo.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert editor.stdout is not None
        editor.stdout.readline()
        deadline = time.perf_counter() + 120
        while len(_in_repo(repo)) < 3 and time.perf_counter() < deadline:  # server, warm pytest, test
            time.sleep(0.2)
        before = len(_in_repo(repo))
    finally:
        editor.kill()
        editor.wait()
    time.sleep(5)
    left = _in_repo(repo)
    for pid in left:  # never leave them running here either
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    git(repo, "checkout", "--", "acme/core.py")
    return {"before": before, "left_after_5s": len(left)}


def _train(repo: Path, minutes: float) -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "ect", "model", "train", "--max-minutes", str(minutes)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=minutes * 60 + 600,
        check=False,
    )
    if proc.returncode != 0:
        print(f"warning: training failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
    return proc.returncode == 0


def _memory_with_fixes(repo: Path) -> dict[str, Any]:
    """Server memory with the trained model loaded for completions, then after the fix engine asked the
    model for candidates (a misspelled call saved: diagnostics, then the verified fixes a code action
    shows). A second copy of the model in the server would show as the difference."""
    user, util = repo / "acme/user.py", repo / "acme/util.py"
    original = util.read_text()
    broken = original.replace("t = add(t, x)", "t = ad(t, x)", 1)
    assert broken != original
    client = StdioClient(repo)
    try:
        client.start(repo)
        text = user.read_text() + "\ncore.\n"
        _open(client, user, text)
        line = text.count("\n") - 1
        deadline = time.perf_counter() + 300
        while True:  # the model answers (it is loaded and warm)
            res, _ = client.request(
                "textDocument/completion",
                {"textDocument": {"uri": user.as_uri()}, "position": {"line": line, "character": 5}},
            )
            items = (res or {}).get("items") or []
            if any(str(it.get("detail", "")).startswith("ect model") for it in items):
                break
            if time.perf_counter() > deadline:
                raise SystemExit("memory: the model never answered")
            time.sleep(0.3)
        time.sleep(1.0)
        loaded = rss_mb(client.proc.pid)
        util.write_text(broken)
        _open(client, util, broken)
        client.notify("textDocument/didSave", {"textDocument": {"uri": util.as_uri()}})

        def failing(p: dict[str, Any]) -> bool:
            keys = [(d.get("data") or {}).get("key") for d in p["diagnostics"]]
            return p.get("uri") == util.as_uri() and any(keys)

        _, params = client.wait("textDocument/publishDiagnostics", failing, 180)
        diags = [d for d in params["diagnostics"] if (d.get("data") or {}).get("key")]
        actions, _ = client.request(  # answered once the fixes are verified (the model was asked)
            "textDocument/codeAction",
            {
                "textDocument": {"uri": util.as_uri()},
                "range": diags[0]["range"],
                "context": {"diagnostics": diags},
            },
            timeout=180,
        )
        time.sleep(1.0)
        after = rss_mb(client.proc.pid)
    finally:
        util.write_text(original)
        client.close()
    return {"rss_model_loaded_mb": loaded, "rss_after_fixes_mb": after, "fix_actions": len(actions or [])}


def bench_server(requests: int, saves: int, train_minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_big_sample(Path(tmp))
        out: dict[str, Any] = {"index": _index_per_10k_lines(Path(tmp))}
        print(f"index: {out['index']}", file=sys.stderr, flush=True)
        out["no_model"] = _completion_latency(repo, requests, want_model=False)
        print(f"no model: {out['no_model']}", file=sys.stderr, flush=True)
        out["save_4k"] = _save_to_diagnostics(repo, saves)
        print(f"save: {out['save_4k']}", file=sys.stderr, flush=True)
        out["save_split"] = _save_split(repo, saves)
        print(f"save split: {out['save_split']}", file=sys.stderr, flush=True)
        out["kill_9"] = _left_after_kill(repo)
        print(f"kill -9: {out['kill_9']}", file=sys.stderr, flush=True)
        if train_minutes > 0 and _train(repo, train_minutes):
            out["model"] = _completion_latency(repo, requests, want_model=True)
            print(f"model: {out['model']}", file=sys.stderr, flush=True)
            out["memory"] = _memory_with_fixes(repo)
            print(f"memory: {out['memory']}", file=sys.stderr, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["completion", "diagnostics", "fixes", "server", "memory", "all"])
    ap.add_argument(
        "--repo", type=Path, help="target repository (a git work tree); default: a generated sample"
    )
    ap.add_argument("--requests", type=int, default=200, help="completion requests")
    ap.add_argument("--saves", type=int, default=20, help="saves for the diagnostics benchmark")
    ap.add_argument("--test-file", default=None, help="test file edited by the diagnostics benchmark")
    ap.add_argument("--per-kind", type=int, default=15, help="faults per kind")
    ap.add_argument("--limit", type=int, default=1000, help="at most this many faults")
    ap.add_argument(
        "--train-minutes", type=float, default=1.0, help="server: train a model this long (0: no model)"
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # restore the target repository on kill
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sample = make_sample(Path(tmp))
        repo = args.repo.resolve() if args.repo else sample
        if args.what in ("completion", "all"):
            results["completion"] = bench_completion(repo, args.requests)
        if args.what in ("diagnostics", "all"):
            results["diagnostics"] = bench_diagnostics(sample, "tests/test_util.py", args.saves)
            if args.repo is not None and args.test_file:
                results["diagnostics_repo"] = bench_diagnostics(repo, args.test_file, args.saves)
        if args.what == "server":
            results["server"] = bench_server(args.requests, args.saves, args.train_minutes)
        if args.what == "memory":  # only the server's memory with a trained model, before/after fixes
            repo = make_big_sample(Path(tmp) / "mem")
            if not _train(repo, args.train_minutes):
                raise SystemExit("memory: training failed")
            results["memory"] = _memory_with_fixes(repo)
        if args.what in ("fixes", "all"):
            if args.repo is None:
                raise SystemExit("fixes: give --repo (a clone of a real project, e.g. /tmp/jinja)")
            results["fixes"] = bench_fixes(repo, args.per_kind, args.limit, args.verbose)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return 0
    print(
        f"ect editor benchmark  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"repo {args.repo or 'generated sample'})"
    )
    if "completion" in results:
        c = results["completion"]
        print(f"\ncompletion over stdio  ({c['requests']} requests, engine: {c['model']})")
        print(f"  p50 {c['p50_ms']:7.1f} ms   (target <= 100)")
        print(f"  p95 {c['p95_ms']:7.1f} ms   (target <= 250)")
        print(
            f"  expected internal member listed: {c['member_found']:.0%}   "
            f"index ready after {c['index_ready_ms']:.0f} ms"
        )
    for key, label in (
        ("diagnostics", "generated sample, tests/test_util.py"),
        ("diagnostics_repo", f"{args.repo}, {args.test_file}"),
    ):
        if key in results:
            d = results[key]
            print(f"\nsave -> diagnostics, one-test change  ({d['saves']} saves, {label})")
            print(f"  p50 {d['p50_ms']:7.1f} ms   (target <= 500)")
            print(f"  p95 {d['p95_ms']:7.1f} ms")
    if "server" in results:
        print_server(results["server"])
    if "memory" in results:
        m = results["memory"]
        print(
            f"\nserver memory, model loaded: {m['rss_model_loaded_mb']:.0f} MB; after the fix engine "
            f"asked it for candidates ({m['fix_actions']} verified fix(es) offered): "
            f"{m['rss_after_fixes_mb']:.0f} MB"
        )
    if "fixes" in results:
        f = results["fixes"]
        print(f"\nverified fixes on injected faults  ({f['faults']} faults)")
        print(f"  {'kind':18s} {'faults':>6s} {'top-1':>6s} {'top-3':>6s}")
        for kind, k in f["by_kind"].items():
            print(f"  {kind:18s} {k['faults']:6d} {k['top1']:6.0%} {k['top3']:6.0%}")
        print(f"  {'all':18s} {f['faults']:6d} {f['top1']:6.0%} {f['top3']:6.0%}   (targets >= 60% / >= 90%)")
        print(
            f"  fixes shown: {f['fixes_shown']}, unverified fixes shown: {f['unverified_shown']} (target 0), "
            f"faults with no fix shown: {f['no_fix_shown']}"
        )
        mf = f["median_first_fix_ms"]
        print(
            f"  median time to first verified fix: {(mf or float('nan')) / 1000:.2f} s (target <= 5 s); "
            f"median loop run that found the failure: {(f['median_loop_ms'] or float('nan')) / 1000:.2f} s"
        )
    return 0


ISSUE_16 = (
    "issue 16 (before): index items 1-12 ms but only after the model (50-130 ms, 1.4 s for the first\n"
    "  request; 312 ms per keystroke in a big file); moved-API scan 2.2 s per save of a 3.8k-line file;\n"
    "  index build 44 s with that file (no completions meanwhile); kill -9 of the editor left the warm\n"
    "  pytest and its test spinning (2 processes)"
)


def print_server(r: dict[str, Any]) -> None:
    print("\nthe server a Neovim user keeps enabled (issue 16)")
    print(f"  {ISSUE_16}")
    for key, label in (("no_model", "no model"), ("model", "trained model loaded")):
        if key in r:
            c = r[key]
            print(
                f"  completion, {label:20s} p50 {c['p50_ms']:6.1f} ms  p95 {c['p95_ms']:6.1f} ms  "
                f"(target p95 <= 20)  lists with a model item: {c['lists_with_a_model_item']}/{c['requests']}"
            )
            if key == "model":
                print(
                    f"    one key every {c['keystroke_ms']:.0f} ms, a list request per key: a model item "
                    f"in {c['lists_with_a_model_item'] / max(c['requests'], 1):.0%} of the lists; "
                    f"{c['sessions_with_a_model_item']}/{c['sessions']} typing sessions showed one, "
                    f"{c['model_item_after_p50_ms']:.0f} ms (p50) / {c['model_item_after_p95_ms']:.0f} ms "
                    f"(p95) after their first key"
                )
                print(
                    f"    pausing up to {PAUSE_S:g} s after the last key (the list asked for again every "
                    f"{c['keystroke_ms']:.0f} ms, as the next key would): "
                    f"{c['sessions_with_a_model_item_after_a_pause']}/{c['sessions']} sessions showed a "
                    f"model item, {c['model_item_with_pause_p50_ms']:.0f} ms (p50) / "
                    f"{c['model_item_with_pause_p95_ms']:.0f} ms (p95) after their first key; "
                    f"those lists p95 {c['pause_requests_p95_ms']:.1f} ms"
                )
    if "model" not in r:
        print("  completion, trained model loaded: not measured (no model trained)")
    d = r["save_4k"]
    print(f"  save -> diagnostics, 4k-line file      p50 {d['p50_ms']:6.0f} ms  p95 {d['p95_ms']:6.0f} ms")
    if "save_split" in r:
        sp = r["save_split"]
        print(
            f"    of which (same saves in-process, p50): pytest's run {sp['pytest_p50_ms']:.0f} ms, "
            f"ect's own work {sp['ect_p50_ms']:.0f} ms (total {sp['total_p50_ms']:.0f} ms)"
        )
    ix = r["index"]
    print(
        f"  index build: {ix['full_s_per_10k']:.2f} s per 10k lines (a {ix['lines']}-line file); "
        f"the server's bounded first build (big changed files wait for the full build) "
        f"{ix['bounded_first_build_s']:.2f} s"
    )
    print(f"  moved-API scan on save of a 60k-line file: {ix['moved_scan_60k_s']:.2f} s")
    pairs = (("no_model", "without"), ("model", "with"))
    mem = [f"{r[k]['server_rss_mb']:.0f} MB {label}" for k, label in pairs if k in r]
    print(f"  server memory: {', '.join(mem)} the model")
    if "memory" in r:
        m = r["memory"]
        print(
            f"  server memory, model loaded: {m['rss_model_loaded_mb']:.0f} MB; after the fix engine asked "
            f"it for candidates ({m['fix_actions']} verified fix(es) offered): "
            f"{m['rss_after_fixes_mb']:.0f} MB"
        )
    k = r["kill_9"]
    print(f"  processes left after kill -9 of the editor: {k['left_after_5s']} (of {k['before']} running)")


if __name__ == "__main__":
    sys.exit(main())
