"""Which test a test module's top-level statement feeds, while pytest imports the module.

Code a test module runs when it is imported belongs to all its tests (`recorder.attribute`),
except where a statement can reach one test function or one test class only: the
`pytest.mark` decorators and default values of a top-level `def test...`, and the body of a
top-level class (`TZ = tzrange(...)`, its methods' decorators), that the module names nowhere
else (`@pytest.mark.parametrize("d", [relativedelta(...)])` reaches that function's
parameters, a class attribute that class's tests); and an assignment to plain names
(`CASES = make_cases()`) whose values only such functions and classes name, directly or
through other such assignments, reaches those. pytest's assertion rewriter compiles test
modules, so ect does not instrument them; while pytest imports one, a trace function on the
module's own frame moves the recorder's context to `c:<module>::<test or class>` (several
joined by NUL) for those statements and back to `c:<module>` for every other one.
Nothing is traced when another tracer (coverage, a debugger) is active.
"""

from __future__ import annotations

import ast
import bisect
import functools
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ect.fingerprints.blocks import digest_bytes

_VERSION = "3"  # of `narrowed_statements`' rules, in the cache's file names
_MAX_LINES = 200_000  # line events traced per module; past that the module's whole rule applies


def narrowed_statements(source: bytes) -> list[tuple[int, int, str]]:
    """(first line, last line, names) of the top-level statements whose code reaches some of the
    module's tests only: each `def test...` and class whose decorators are all `pytest.mark`
    marks or `unittest` skips and whose name occurs nowhere else in the source (a subclass, an
    alias or a string naming it would reach other tests), and each assignment to plain names
    (`TZOFFSETS = make_offsets()`) that only those functions and classes, or other such
    assignments, mention. `names` is one name, or several joined by NUL."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    imported = {a.name for s in tree.body if isinstance(s, ast.Import) for a in s.names if a.asname is None}
    lines = source.splitlines(keepends=True)
    spans = [
        (min([s.lineno, *(d.lineno for d in _decorators(s))]), s.end_lineno or s.lineno) for s in tree.body
    ]
    mentions: dict[bytes, set[int]] = {}  # word -> the statements it occurs in (-1: between them)
    covered = 0
    for i, (a, b) in enumerate([*spans, (len(lines) + 1, len(lines))]):
        for where, text in ((-1, lines[covered : a - 1]), (i, lines[a - 1 : b])):
            for word in set(_WORD.findall(b"".join(text))):
                mentions.setdefault(word, set()).add(where)
        covered = max(covered, b)
    owner: dict[int, str] = {}  # statement index -> the test function or class it reaches
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            if not stmt.name.startswith("test"):
                continue
        elif not isinstance(stmt, ast.ClassDef):
            continue
        if not all(_is_mark(d, imported) for d in stmt.decorator_list):
            continue
        if mentions.get(stmt.name.encode()) != {i}:
            continue  # aliased, reassigned, subclassed, named in a string: it may reach other tests
        owner[i] = stmt.name
    values = {i: _bound(stmt) for i, stmt in enumerate(tree.body)}
    memo: dict[int, set[str] | None] = {}

    def readers(i: int, seen: frozenset[int]) -> set[str] | None:
        """The tests and classes that can see what statement `i` binds; None: unknown."""
        if i in memo:
            return memo[i]
        names = values.get(i)
        if not names or i in seen or len(seen) > _MAX_CHAIN:
            return None
        found: set[str] = set()
        for j in sorted({j for name in names for j in mentions.get(name, ())}):
            if j == i:
                continue
            if j in owner:
                found.add(owner[j])
                continue
            more = readers(j, seen | {i})
            if more is None:
                memo[i] = None
                return None
            found |= more
        memo[i] = found or None
        return memo[i]

    out = []
    for i in range(len(tree.body)):
        if (i and spans[i - 1][1] >= spans[i][0]) or (i + 1 < len(spans) and spans[i][1] >= spans[i + 1][0]):
            continue  # `a = f(); b = g()`: lines are what the trace sees
        reach = {owner[i]} if i in owner else readers(i, frozenset())
        if reach:
            out.append((*spans[i], "\0".join(sorted(reach))))
    return out


_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_MAX_CHAIN = 50  # values read through more values than this: the module's rule
# names pytest or Python read from a module by themselves: a value bound to one reaches every test
_SPECIAL = re.compile(r"^(__\w+__|pytestmark|pytest_\w+|collect_ignore\w*|(setup|teardown)\w*|[Tt]est\w*)$")


def _decorators(stmt: ast.stmt) -> list[ast.expr]:
    return list(getattr(stmt, "decorator_list", []))


def _bound(stmt: ast.stmt) -> set[bytes]:
    """The names an assignment to plain names binds (comprehension variables and walrus targets
    included); empty for any other statement or a name with a meaning of its own."""
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets = [stmt.target]
    else:
        return set()
    if not all(isinstance(t, ast.Name) for t in targets):
        return set()  # an attribute or an item: it changes an object others may hold
    names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    if any(_SPECIAL.match(n) for n in names):
        return set()
    return {n.encode() for n in names}


def cached_narrowed_statements(path: str, cache_dir: str | None) -> list[tuple[int, int, str]]:
    """`narrowed_statements` of the file at `path`, cached by content in `cache_dir`."""
    try:
        with open(path, "rb") as fh:
            source = fh.read()
    except OSError:
        return []
    if not cache_dir:
        return narrowed_statements(source)
    key = digest_bytes(source)
    cache = os.path.join(cache_dir, f"{key}-{_VERSION}.statements.json")
    try:
        with open(cache, encoding="utf-8") as fh:
            return [(int(a), int(b), str(c)) for a, b, c in json.load(fh)]
    except (OSError, ValueError, TypeError):
        pass  # missing or corrupt: computed again
    spans = narrowed_statements(source)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(spans, fh)
        os.replace(tmp, cache)
    except OSError:
        pass
    return spans


_UNITTEST_SKIPS = frozenset({"skip", "skipIf", "skipUnless", "expectedFailure"})


def _is_mark(node: ast.expr, imported: set[str]) -> bool:
    """`pytest.mark.<name>`, called or not (`pytest.mark.parametrize(...)`), or a `unittest`
    skip (`unittest.skipIf(...)`), with `pytest` or `unittest` imported under its own name."""
    while isinstance(node, ast.Call):
        node = node.func
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in imported:
        return False
    if node.id == "pytest":
        return len(attrs) >= 2 and attrs[-1] == "mark"
    return node.id == "unittest" and len(attrs) == 1 and attrs[0] in _UNITTEST_SKIPS


def trace_module_import(
    filename: str,
    spans: list[tuple[int, int, str]],
    module_context: str,
    switch: Callable[[str], str],
    instrumented: str = "",
) -> Callable[[], None] | None:
    """Start tracing the import of the test module `filename`; returns the function that stops
    it (None when nothing is traced: no narrowed statement, or another tracer is set). A module
    whose globals hold `instrumented` is ect's to record (its import-time code belongs to every
    importer): it is left alone."""
    if not spans or sys.gettrace() is not None:
        return None
    starts = [s[0] for s in spans]
    lines = [0]

    def local(frame: Any, event: str, arg: Any) -> Any:
        try:  # an exception here would surface in the test module's import
            if event == "line" and lines[0] < _MAX_LINES:
                lines[0] += 1
                line = frame.f_lineno
                i = bisect.bisect_right(starts, line) - 1
                inside = i >= 0 and line <= spans[i][1]
                switch(f"{module_context}::{spans[i][2]}" if inside else module_context)
                return local
            if event == "exception":  # maybe caught at module level (`try: import x`)
                return local
            switch(module_context)  # the module's end, or too many lines: the module's rule
        except Exception:
            pass
        frame.f_trace = None
        stop()
        return None

    def start(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        if event == "call" and code.co_name == "<module>" and code.co_filename == filename:
            if instrumented and instrumented in frame.f_globals:
                stop()
                return None
            return local
        return None

    def stop() -> None:
        if sys.gettrace() is start:
            sys.settrace(None)

    start.ect_import_tracer = True  # type: ignore[attr-defined]  # see `untraced`
    sys.settrace(start)
    return stop


_F = TypeVar("_F", bound=Callable[..., Any])


def untraced(func: _F) -> _F:
    """`func`, run with the import tracer of `trace_module_import` suspended (any other tracer is
    left alone). While a test module is imported, every Python call anywhere calls the tracer;
    pytest's assertion rewriting of the module (an AST walk of millions of calls, done on every
    run where byte-code caches are off, as with `PYTHONDONTWRITEBYTECODE`) ran 2-3x slower under it."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        tracer = sys.gettrace()
        if getattr(tracer, "ect_import_tracer", False) is not True:
            return func(*args, **kwargs)
        sys.settrace(None)
        try:
            return func(*args, **kwargs)
        finally:
            sys.settrace(tracer)

    call.ect_untraced = True  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]
