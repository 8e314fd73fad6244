"""Caches that outlive a test: what their misses run is import time (instrumented by `recorder`).

A later test gets what an earlier one computed without running the code, so the code a cache miss
runs belongs to every test that imports that code, as a module's import-time code does. Two shapes are
recognised in a repository function (a block: a top-level function or method):

- a process-wide memo decorator (`functools.lru_cache`/`cache`, `cached`, `memoize`): the whole body,
  which runs on a miss only;
- a hand-written cache: a statement that stores the result of a call into a container that outlives
  the call (an attribute such as `cls.__instances` or `self._memoized`, or a module global) under a key
  the function also looks up there (`C.get(K)`, `K in C`, `C[K]`): `C[K] = make(...)` or
  `C.setdefault(K, make(...))`, or `rv = make(...)` where the function stores `rv` so (`C[K] = rv`).
  Only that statement, which runs on a miss, is wrapped. Functions nested in a block are looked at
  too (dateutil's `gettz = __get_gettz()` is an object whose `__call__` caches); such a function gets
  a hit marker of its own (`block|*name`), and its misses are charged to the tests that called it.

The wrapper calls `MEMO(1, block)` before and `MEMO(0, block)` after (in a `finally`). A decorator's
cache hits run no code of the module, so `block` is "" there: what a miss runs is import time, charged
to every test importing that code. A hand-written cache's function runs on every hit, so `block` names
it: what a miss runs is charged to every test of the process that ran that function (`recorder`), the
one that filled the cache and the ones that got its result. Generators and coroutines (their body runs
piecemeal, interleaved with other code) are left alone.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from ect.fingerprints.blocks import SHARED_MEMO_DECORATORS, _decorator_name

HITS = "__ect_hits__"  # the module global holding its hit table (`recorder`)
# the call a wrapped cache miss makes: a method of the hit table, so that nothing is added to the
# module's namespace that code enumerating it could take for its own (toolz curries every callable)
MEMO = f"{HITS}.miss"
_Function = ast.FunctionDef | ast.AsyncFunctionDef
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _own_nodes(node: _Function) -> list[ast.AST]:
    """The nodes of `node`'s body that run in its own frame (not in nested functions or classes)."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(node.body)
    while todo:
        sub = todo.pop()
        out.append(sub)
        if not isinstance(sub, _SCOPES):
            todo.extend(ast.iter_child_nodes(sub))
    return out


def _call(entering: int, block: str, at: ast.AST) -> ast.stmt:
    args: list[ast.expr] = [ast.Constant(entering), ast.Constant(block)]
    func = ast.Attribute(ast.Name(HITS, ast.Load()), "miss", ast.Load())
    return ast.copy_location(ast.Expr(ast.Call(func, args, [])), at)


def _guard(stmts: list[ast.stmt], block: str, at: ast.AST) -> list[ast.stmt]:
    body = stmts or [ast.copy_location(ast.Pass(), at)]
    return [_call(1, block, at), ast.copy_location(ast.Try(body, [], [], [_call(0, block, at)]), body[0])]


def _locals(node: _Function, own: list[ast.AST]) -> set[str]:
    args = node.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    declared = {n for s in own if isinstance(s, ast.Global | ast.Nonlocal) for n in s.names}
    stored = {s.id for s in own if isinstance(s, ast.Name) and isinstance(s.ctx, ast.Store | ast.Del)}
    return (names | stored) - declared


def _lasting(container: ast.expr, local: set[str]) -> bool:
    """Whether `container` may outlive the call: an attribute, or a name that is not a local."""
    if isinstance(container, ast.Attribute):
        return True
    return isinstance(container, ast.Name) and container.id not in local


def _lookups(own: list[ast.AST]) -> set[tuple[str, str]]:
    """(container, key) of every lookup in the function, as `ast.dump` strings."""
    found: set[tuple[str, str]] = set()
    for sub in own:
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.args:
            if sub.func.attr in ("get", "__getitem__", "__contains__"):
                found.add((ast.dump(sub.func.value), ast.dump(sub.args[0])))
        elif (
            isinstance(sub, ast.Compare) and len(sub.ops) == 1 and isinstance(sub.ops[0], ast.In | ast.NotIn)
        ):
            found.add((ast.dump(sub.comparators[0]), ast.dump(sub.left)))
        elif isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Load):
            found.add((ast.dump(sub.value), ast.dump(sub.slice)))
    return found


def _stored(own: list[ast.AST], lookups: set[tuple[str, str]], local: set[str]) -> set[str]:
    """Local names whose value the function stores in a lasting container under a key it looks up
    there (`C[K] = rv`, `C.setdefault(K, rv)`): a call assigned to one is the cache's miss."""
    found: set[str] = set()
    for sub in own:
        if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Name):
            for target in sub.targets:
                if (
                    isinstance(target, ast.Subscript)
                    and _lasting(target.value, local)
                    and (ast.dump(target.value), ast.dump(target.slice)) in lookups
                ):
                    found.add(sub.value.id)
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "setdefault"
            and len(sub.args) == 2
            and isinstance(sub.args[1], ast.Name)
            and _lasting(sub.func.value, local)
        ):
            found.add(sub.args[1].id)
    return found & local


def _is_lookup(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr in _LOOKUPS


_LOOKUPS = ("get", "__getitem__", "__contains__", "setdefault", "pop")


def _fills(stmt: ast.stmt, lookups: set[tuple[str, str]], local: set[str], stored: set[str]) -> bool:
    """Whether `stmt` computes what the function stores in a lasting container under a key looked
    up there: the store itself (`C[K] = make()`, `C.setdefault(K, make())`), or the call assigned to
    the local that is stored (`rv = make()` ... `C[K] = rv`)."""
    value = stmt.value if isinstance(stmt, ast.Assign | ast.Expr | ast.AnnAssign) else None
    if not isinstance(value, ast.Call):
        return False
    if (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and stmt.targets[0].id in stored
        and not _is_lookup(value)
    ):
        return True
    if isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if (
                isinstance(target, ast.Subscript)
                and _lasting(target.value, local)
                and (ast.dump(target.value), ast.dump(target.slice)) in lookups
            ):
                return True
    func = value.func
    if isinstance(func, ast.Attribute) and func.attr == "setdefault" and len(value.args) == 2:
        return _lasting(func.value, local) and isinstance(value.args[1], ast.Call)
    return False


def _wrap_fills(
    body: list[ast.stmt],
    lookups: set[tuple[str, str]],
    local: set[str],
    stored: set[str],
    block: Callable[[], str],
) -> bool:
    """Wrap every filling statement in `body` and the blocks nested in it; whether any was."""
    wrapped = False
    out: list[ast.stmt] = []
    for stmt in body:
        if _fills(stmt, lookups, local, stored):
            out.extend(_guard([stmt], block(), stmt))
            wrapped = True
            continue
        if not isinstance(stmt, _SCOPES):
            for name in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, name, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    wrapped |= _wrap_fills(inner, lookups, local, stored, block)
            for handler in getattr(stmt, "handlers", []):
                wrapped |= _wrap_fills(handler.body, lookups, local, stored, block)
        out.append(stmt)
    body[:] = out
    return wrapped


def wrap(
    node: _Function,
    block: str,
    is_marker: Callable[[ast.stmt], bool],
    name_nested: Callable[[_Function], tuple[str, ast.stmt]],
) -> bool:
    """Instrument the cache misses of the block `node` (named `block`) and of the functions nested
    in it in place (see the module docstring); whether it did. `is_marker(stmt)` tells the hit
    markers at the top of a body. A nested function that caches (`gettz = make_gettz()` returns an
    object whose `__call__` caches) gets a hit marker of its own, `name_nested(function)` gives its
    name and statement, and its misses carry that name: the tests that called it got its cached
    results, not every test that ran some function of the block (its module's import made it)."""
    wrapped = _wrap_one(node, lambda: block, is_marker)
    nested = [n for n in ast.walk(node) if n is not node and isinstance(n, _Function)]
    for sub in nested:
        named: list[tuple[str, ast.stmt]] = []

        def name_of(sub: _Function = sub, named: list[tuple[str, ast.stmt]] = named) -> str:
            if not named:
                named.append(name_nested(sub))
            return named[0][0]

        wrapped |= _wrap_one(sub, name_of, is_marker)
        if named:  # after the docstring and the block's own markers
            pos = 1 if sub.body and _is_docstring(sub.body[0]) else 0
            while pos < len(sub.body) and is_marker(sub.body[pos]):
                pos += 1
            sub.body.insert(pos, named[0][1])
    return wrapped


def _wrap_one(node: _Function, block: Callable[[], str], is_marker: Callable[[ast.stmt], bool]) -> bool:
    own = _own_nodes(node)
    if isinstance(node, ast.AsyncFunctionDef) or any(isinstance(s, ast.Yield | ast.YieldFrom) for s in own):
        return False
    if any(_decorator_name(d) in SHARED_MEMO_DECORATORS for d in node.decorator_list):
        body = node.body
        pos = 0
        while pos < len(body) and ((pos == 0 and _is_docstring(body[0])) or is_marker(body[pos])):
            pos += 1
        node.body = [*body[:pos], *_guard(body[pos:], "", node)]
        return True
    lookups = _lookups(own)
    if not lookups:
        return False
    local = _locals(node, own)
    return _wrap_fills(node.body, lookups, local, _stored(own, lookups, local), block)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )
