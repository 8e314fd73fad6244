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

Keys (`keyed`): where the cache's container is used only in its function and only under one key
expression (`C.get(K)`, `K in C`, `C[K]`, no other use in the module) that keeps its value from its
first use on (parameters, or locals assigned before it at the top of the body), each lookup
records the key it looks up (`HITS.keyed(block, K)`), and a miss is started with the key it fills
(`MEMO(1, block, K)`): what that miss runs goes to the tests that looked up an equal key (and the
one that ran it), not to every test that called the function with any key.
"""

from __future__ import annotations

import ast
import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

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


def _call(entering: int, block: str, at: ast.AST, key: ast.expr | None = None) -> ast.stmt:
    args: list[ast.expr] = [ast.Constant(entering), ast.Constant(block)]
    if key is not None:
        args.append(copy.deepcopy(key))
    func = ast.Attribute(ast.Name(HITS, ast.Load()), "miss", ast.Load())
    return ast.copy_location(ast.Expr(ast.Call(func, args, [])), at)


def _guard(stmts: list[ast.stmt], block: str, at: ast.AST, key: ast.expr | None = None) -> list[ast.stmt]:
    body = stmts or [ast.copy_location(ast.Pass(), at)]
    return [
        _call(1, block, at, key),
        ast.copy_location(ast.Try(body, [], [], [_call(0, block, at)]), body[0]),
    ]


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


_Store = tuple[str, ast.expr]  # (the container, as an `ast.dump` string; the key expression)


def _stored(own: list[ast.AST], lookups: set[tuple[str, str]], local: set[str]) -> dict[str, list[_Store]]:
    """Local names whose value the function stores in a lasting container under a key it looks up
    there (`C[K] = rv`, `C.setdefault(K, rv)`), with where: a call assigned to one is the miss."""
    found: dict[str, list[_Store]] = {}
    for sub in own:
        if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Name):
            for target in sub.targets:
                if (
                    isinstance(target, ast.Subscript)
                    and _lasting(target.value, local)
                    and (ast.dump(target.value), ast.dump(target.slice)) in lookups
                ):
                    found.setdefault(sub.value.id, []).append((ast.dump(target.value), target.slice))
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "setdefault"
            and len(sub.args) == 2
            and isinstance(sub.args[1], ast.Name)
            and _lasting(sub.func.value, local)
        ):
            found.setdefault(sub.args[1].id, []).append((ast.dump(sub.func.value), sub.args[0]))
    return {name: where for name, where in found.items() if name in local}


def _is_lookup(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr in _LOOKUPS


_LOOKUPS = ("get", "__getitem__", "__contains__", "setdefault", "pop")


def _fills(
    stmt: ast.stmt, lookups: set[tuple[str, str]], local: set[str], stored: dict[str, list[_Store]]
) -> list[_Store] | None:
    """Where `stmt` stores what it computes, when it computes what the function stores in a lasting
    container under a key looked up there: the store itself (`C[K] = make()`,
    `C.setdefault(K, make())`), or the call assigned to the local that is stored (`rv = make()` ...
    `C[K] = rv`); None when it does not."""
    value = stmt.value if isinstance(stmt, ast.Assign | ast.Expr | ast.AnnAssign) else None
    if not isinstance(value, ast.Call):
        return None
    if (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and stmt.targets[0].id in stored
        and not _is_lookup(value)
    ):
        return stored[stmt.targets[0].id]
    if isinstance(stmt, ast.Assign):
        where = [
            (ast.dump(target.value), target.slice)
            for target in stmt.targets
            if isinstance(target, ast.Subscript)
            and _lasting(target.value, local)
            and (ast.dump(target.value), ast.dump(target.slice)) in lookups
        ]
        if where:
            return where
    func = value.func
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "setdefault"
        and len(value.args) == 2
        and _lasting(func.value, local)
        and isinstance(value.args[1], ast.Call)
    ):
        return [(ast.dump(func.value), value.args[0])]
    return None


@dataclass
class ModuleUses:
    """How often each container name is read in a module (`loads`: `.attr`, `Class.__private` or a
    bare name), and the class each function is defined in (`owner`, by `id`)."""

    loads: Counter[str] = field(default_factory=Counter)
    owner: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, tree: ast.AST) -> ModuleUses:
        uses = cls()
        todo: list[tuple[ast.AST, str]] = [(tree, "")]
        while todo:
            node, klass = todo.pop()
            if isinstance(node, ast.ClassDef):
                klass = node.name
            elif isinstance(node, _Function):
                uses.owner[id(node)] = klass
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                uses.loads[_attr_key(node.attr, klass)] += 1
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                uses.loads[node.id] += 1
            todo.extend((child, klass) for child in ast.iter_child_nodes(node))
        return uses

    def name_of(self, container: ast.expr, function: _Function) -> str | None:
        if isinstance(container, ast.Name):
            return container.id
        if isinstance(container, ast.Attribute):
            return _attr_key(container.attr, self.owner.get(id(function), ""))
        return None


def _attr_key(attr: str, klass: str) -> str:
    private = attr.startswith("__") and not attr.endswith("__")  # mangled: the class's own
    return f"{klass}.{attr}" if private else f".{attr}"


def _keyed_uses(own: list[ast.AST], container: str, key: str) -> list[tuple[ast.AST, str]] | None:
    """Each use of `container` in the function as (node, field holding the key to record; "" for a
    store), when every one is a keyed use under `key`; else None."""
    parent: dict[int, ast.AST] = {}
    for sub in own:
        for child in ast.iter_child_nodes(sub):
            parent[id(child)] = sub
    uses: list[tuple[ast.AST, str]] = []
    for sub in own:
        if not isinstance(sub, ast.expr) or ast.dump(sub) != container:
            continue
        up = parent.get(id(sub))
        above = parent.get(id(up)) if up is not None else None
        if (
            isinstance(up, ast.Attribute)
            and up.value is sub
            and up.attr in _LOOKUPS
            and isinstance(above, ast.Call)
            and above.func is up
            and above.args
            and ast.dump(above.args[0]) == key
        ):
            uses.append((above, "args"))
        elif isinstance(up, ast.Subscript) and up.value is sub and ast.dump(up.slice) == key:
            uses.append((up, "slice" if isinstance(up.ctx, ast.Load) else ""))
        elif (
            isinstance(up, ast.Compare)
            and len(up.ops) == 1
            and isinstance(up.ops[0], ast.In | ast.NotIn)
            and up.comparators[0] is sub
            and ast.dump(up.left) == key
        ):
            uses.append((up, "left"))
        else:
            return None
    return uses or None


def _steady(node: _Function, own: list[ast.AST], key: ast.expr, first_use: int) -> bool:
    """Whether `key` (names and constants) has one value from line `first_use` on, bound whenever
    it is evaluated there: each name a parameter or a local, assigned only in statements at the top
    of the body that end above that line (`key = (name, offset)`, or in both branches of an `if`),
    never deleted, declared global or nonlocal."""
    parts = key.elts if isinstance(key, ast.Tuple) else [key]
    if not parts or not all(isinstance(p, ast.Name | ast.Constant) for p in parts):
        return False
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    args = node.args
    params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    if any(isinstance(s, ast.Global | ast.Nonlocal) and names & set(s.names) for s in own):
        return False
    before = [s for s in node.body if (s.end_lineno or s.lineno) < first_use]
    early = {id(n) for s in before for n in ast.walk(s)}
    stores = [s for s in own if isinstance(s, ast.Name) and s.id in names and not isinstance(s.ctx, ast.Load)]
    if any(isinstance(s.ctx, ast.Del) or id(s) not in early for s in stores):
        return False
    return all(n in params or _definite(before, n) for n in names)


def _definite(stmts: list[ast.stmt], name: str) -> bool:
    """Whether running `stmts` to their end surely binds `name` (an assignment, or an `if` whose
    every branch binds it or leaves the function)."""
    for stmt in stmts:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
        if isinstance(stmt, ast.If) and all(
            _definite(branch, name) or (branch and isinstance(branch[-1], ast.Return | ast.Raise))
            for branch in (stmt.body, stmt.orelse)
        ):
            return True
    return False


def _keyed(
    node: _Function, own: list[ast.AST], where: list[_Store], uses_of: ModuleUses | None, fill: int
) -> tuple[ast.expr, list[tuple[ast.AST, str]]] | None:
    """The key of a fill (on line `fill`) stored in one place whose container is keyed (module
    docstring), and the uses of the container (`_keyed_uses`); None when its misses go to every
    caller."""
    if uses_of is None or len({(c, ast.dump(k)) for c, k in where}) != 1:
        return None
    container, key = where[0]
    uses = _keyed_uses(own, container, ast.dump(key))
    if uses is None:
        return None
    first = next(s for s in own if isinstance(s, ast.expr) and ast.dump(s) == container)
    name = uses_of.name_of(first, node)
    if (
        name is None
        or uses_of.loads[name] != len(uses)
        or not _steady(node, own, key, min([fill, *(getattr(n, "lineno", 0) for n, _ in uses)]))
    ):
        return None
    return key, uses


def _record_keys(uses: list[tuple[ast.AST, str]], block: str, fill: list[ast.stmt]) -> None:
    """Each lookup records its key: `C.get(HITS.keyed(block, K))` (stores, and the `fill`
    statements themselves, whose miss records its key, record nothing)."""
    func = ast.Attribute(ast.Name(HITS, ast.Load()), "keyed", ast.Load())
    inside = {id(n) for stmt in fill for n in ast.walk(stmt)}
    for node, name in uses:
        if not name or id(node) in inside:
            continue
        old = node.args[0] if name == "args" else getattr(node, name)  # type: ignore[attr-defined]
        new = ast.copy_location(ast.Call(copy.deepcopy(func), [ast.Constant(block), old], []), old)
        if name == "args":
            node.args[0] = new  # type: ignore[attr-defined]
        else:
            setattr(node, name, new)


def _wrap_fills(
    body: list[ast.stmt],
    fills: Callable[[ast.stmt], list[_Store] | None],
    guard: Callable[[list[ast.stmt], list[_Store]], list[ast.stmt]],
) -> bool:
    """Wrap every filling statement in `body` and the blocks nested in it; whether any was. A call
    assigned to a local that a later statement of the same body stores (`rv = make()`,
    `rv.bind(...)`, `C[K] = rv`) is wrapped with the statements up to that store: what they do to
    the value is cached with it (marshmallow binds a cached field to its schema so)."""
    wrapped = False
    out: list[ast.stmt] = []
    i = 0
    while i < len(body):
        stmt = body[i]
        where = fills(stmt)
        if where is not None:
            end = _store_end(body, i)
            out.extend(guard(body[i : end + 1], where))
            wrapped = True
            i = end + 1
            continue
        i += 1
        if not isinstance(stmt, _SCOPES):
            for name in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, name, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    wrapped |= _wrap_fills(inner, fills, guard)
            for handler in getattr(stmt, "handlers", []):
                wrapped |= _wrap_fills(handler.body, fills, guard)
        out.append(stmt)
    body[:] = out
    return wrapped


def _store_end(body: list[ast.stmt], i: int) -> int:
    """The index of the last statement of `body` after `i` that stores the local `body[i]` assigns
    in a container (`C[K] = rv`, `C.setdefault(K, rv)`); `i` when there is none."""
    stmt = body[i]
    if not (
        isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
    ):
        return i
    name = stmt.targets[0].id
    for j in range(len(body) - 1, i, -1):
        for sub in ast.walk(body[j]):
            if (
                isinstance(sub, ast.Assign)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == name
                and any(isinstance(t, ast.Subscript) for t in sub.targets)
            ) or (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr == "setdefault"
                and len(sub.args) == 2
                and isinstance(sub.args[1], ast.Name)
                and sub.args[1].id == name
            ):
                return j
    return i


def wrap(
    node: _Function,
    block: str,
    is_marker: Callable[[ast.stmt], bool],
    name_nested: Callable[[_Function], tuple[str, ast.stmt]],
    uses: ModuleUses | None = None,
) -> bool:
    """Instrument the cache misses of the block `node` (named `block`) and of the functions nested
    in it in place (see the module docstring); whether it did. `is_marker(stmt)` tells the hit
    markers at the top of a body. A nested function that caches (`gettz = make_gettz()` returns an
    object whose `__call__` caches) gets a hit marker of its own, `name_nested(function)` gives its
    name and statement, and its misses carry that name: the tests that called it got its cached
    results, not every test that ran some function of the block (its module's import made it).
    `uses`: the module's (`ModuleUses.of`), for misses charged by key; None: by function."""
    wrapped = _wrap_one(node, lambda: block, is_marker, uses)
    nested = [n for n in ast.walk(node) if n is not node and isinstance(n, _Function)]
    for sub in nested:
        named: list[tuple[str, ast.stmt]] = []

        def name_of(sub: _Function = sub, named: list[tuple[str, ast.stmt]] = named) -> str:
            if not named:
                named.append(name_nested(sub))
            return named[0][0]

        wrapped |= _wrap_one(sub, name_of, is_marker, uses)
        if named:  # after the docstring and the block's own markers
            pos = 1 if sub.body and _is_docstring(sub.body[0]) else 0
            while pos < len(sub.body) and is_marker(sub.body[pos]):
                pos += 1
            sub.body.insert(pos, named[0][1])
    return wrapped


def _wrap_one(
    node: _Function,
    block: Callable[[], str],
    is_marker: Callable[[ast.stmt], bool],
    uses: ModuleUses | None,
) -> bool:
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
    stored = _stored(own, lookups, local)
    keyed: dict[tuple[tuple[str, str], ...], tuple[ast.expr, list[tuple[ast.AST, str]]] | None] = {}

    def guard(stmts: list[ast.stmt], where: list[_Store]) -> list[ast.stmt]:
        name = block()
        place = tuple(sorted({(c, ast.dump(k)) for c, k in where}))
        if place not in keyed:  # judged before any lookup of the container records its key
            keyed[place] = found = _keyed(node, own, where, uses, stmts[0].lineno)
            if found is not None:
                _record_keys(found[1], name, stmts)
        found = keyed[place]
        return _guard(stmts, name, stmts[0], None if found is None else found[0])

    return _wrap_fills(node.body, lambda stmt: _fills(stmt, lookups, local, stored), guard)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )
