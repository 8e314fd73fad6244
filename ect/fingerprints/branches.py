"""Branches: the parts of a function that only some of its calls run.

A block (see `blocks`) is a whole function: every test that called it depends on all of it. Yet a
change inside `if x:` can only affect a call that entered that branch: until a changed statement
runs, the new code behaves exactly as the old one. So each branch body of a block (an `if`/`elif`/
`else` body, an `except` handler, a `try`'s `else`, a `case`) is a block of its own, named
`block|n` (pre-order), with a checksum of its statements (its inner branches left out), and the
recorder marks it when a call enters it. The function's own checksum covers the rest (conditions,
the statements every call runs) with each branch body replaced by a placeholder, plus what a branch
can change for the whole function (`scope_signature`, from the compiled code): its local, cell and
free variables (a new assignment makes a global name local everywhere in the function) and whether
it is a generator or coroutine. Loop bodies, `with` and `try` bodies and `finally` run whenever the code
around them runs, so they stay with it (a marker on every iteration would cost without narrowing).

A function or lambda nested in a block may run later, in another test, on values the enclosing call
computed in any of its branches: it marks `block|*`, which any change of the block reaches.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from types import CodeType
from typing import NamedTuple

SUB = "|"
ANY = "|*"
_Function = ast.FunctionDef | ast.AsyncFunctionDef
# `inspect`'s code flags (not imported: it costs the hook path 15 ms): optimized (a function);
# generator, coroutine, iterable coroutine, async generator
_CO_OPTIMIZED = 0x1
_CO_KINDS = 0x20 | 0x80 | 0x100 | 0x200
_TRY = (ast.Try, getattr(ast, "TryStar", ast.Try))  # `except*` from Python 3.11
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def branch_bodies(fn: _Function) -> list[list[ast.stmt]]:
    """The branch bodies of `fn` in pre-order (the statement lists themselves, to mark or digest)."""
    out: list[list[ast.stmt]] = []
    _walk(fn.body, out)
    return out


def _walk(stmts: list[ast.stmt], out: list[list[ast.stmt]]) -> None:
    for stmt in stmts:
        if isinstance(stmt, _SCOPES):
            continue  # a nested scope's code belongs to the body that defines it
        if isinstance(stmt, ast.If):
            _branch(stmt.body, out)
            if stmt.orelse:
                _branch(stmt.orelse, out)
        elif isinstance(stmt, _TRY):
            _walk(stmt.body, out)
            for handler in stmt.handlers:
                _branch(handler.body, out)
            if stmt.orelse:
                _branch(stmt.orelse, out)
            _walk(stmt.finalbody, out)
        elif isinstance(stmt, ast.Match):
            for case in stmt.cases:
                _branch(case.body, out)
        elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith)):
            _walk(stmt.body, out)
            _walk(getattr(stmt, "orelse", []), out)


def _branch(body: list[ast.stmt], out: list[list[ast.stmt]]) -> None:
    out.append(body)
    _walk(body, out)


def split_digests(fn: _Function, key: str, digest: Callable[[str], str]) -> dict[str, str]:
    """Checksums of `fn`'s branch bodies by name (`key|n`); each body of the function (which is
    modified in place) is left as a placeholder, so the function's own dump no longer covers them."""
    bodies = branch_bodies(fn)
    copies = [list(body) for body in bodies]
    for body in bodies:
        body[:] = [ast.Expr(ast.Name("__ect_branch__", ast.Load()))]
    return {
        f"{key}{SUB}{i}": digest(ast.dump(ast.Module(copy, []))) for i, copy in enumerate(copies, start=1)
    }


def function_codes(tree: ast.Module, filename: str) -> dict[tuple[int, str], CodeType]:
    """The code objects of the module's blocks by (first line, name), from compiling `tree` (which
    is left as it was); empty when it does not compile (a module that cannot be imported)."""
    try:
        with warnings.catch_warnings():  # the compiler's warnings (`x is 1`) are the compile step's to show
            warnings.simplefilter("ignore")
            module = compile(tree, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return {}
    out: dict[tuple[int, str], CodeType] = {}
    todo = [module]
    while todo:
        for const in todo.pop().co_consts:
            if isinstance(const, CodeType):
                if const.co_flags & _CO_OPTIMIZED:  # a function: a block
                    out[(const.co_firstlineno, const.co_name)] = const
                else:  # a class body: its methods are blocks
                    todo.append(const)
    return out


def scope_signature(code: CodeType) -> str:
    """What a branch can change for the whole function, as the compiler sees it: its local, cell
    and free variables (a new assignment makes a global name local in every branch), and whether
    it is a generator or coroutine."""
    kinds = code.co_flags & _CO_KINDS
    return repr((sorted(code.co_varnames), sorted(code.co_cellvars), sorted(code.co_freevars), kinds))


def label(name: str) -> str:
    """A block name for people: `f|2` is "f (branch 2)", `f|*` "a function f made"."""
    base, sub, part = name.partition(SUB)
    if not sub:
        return name
    if part.startswith("*") and part != "*":
        return f"{base} (its cache in {part[1:]})"
    return f"{base} (a function or lambda it made)" if part == "*" else f"{base} (branch {part})"


def base(name: str) -> str:
    """The function a block name belongs to (`f|2` and `f|*` are parts of `f`)."""
    return name.split(SUB, 1)[0]


def expand(changed: frozenset[str]) -> frozenset[str]:
    """`changed` plus `block|*` for every block that changed in any part."""
    return changed | {base(name) + ANY for name in changed}


def hit(changed: frozenset[str], name: str) -> bool:
    """Whether a test that ran block `name` sees a change of the blocks `changed` (`expand`ed): a
    branch runs inside its function, so a change of the function reaches it too."""
    return name in changed or (SUB in name and base(name) in changed)


class Changed(NamedTuple):
    """`differs` for every name of two checksum maps at once."""

    names: frozenset[str]  # changed or removed blocks, branches of changed functions, `f|*` of those
    known: frozenset[str]  # the names it decides: every block and `f|*` of every function

    def differs(self, old: dict[str, str], new: dict[str, str], name: str) -> bool:
        return name in self.names if name in self.known else differs(old, new, name)


def reached(old: dict[str, str], new: dict[str, str]) -> Changed:
    """Which block names `differs` says changed between the checksum maps."""
    keys = old.keys() | new.keys()
    known = frozenset(keys | {base(k) + ANY for k in keys})
    return Changed(spread(frozenset(k for k in keys if old.get(k) != new.get(k)), keys), known)


def spread(changed: frozenset[str], keys: AbstractSet[str]) -> frozenset[str]:
    """`changed` with what `hit` says a change of it reaches among the block names `keys`: every
    branch of a changed function and `f|*` of every function changed in any part."""
    if not changed:
        return changed
    bases = {base(k) for k in changed}
    return changed | {b + ANY for b in bases} | {k for k in keys if SUB in k and base(k) in changed}


def differs(old: dict[str, str], new: dict[str, str], name: str) -> bool:
    """Whether block `name` changed between the checksum maps, as `hit` sees it."""
    base, sub, _ = name.partition(SUB)
    if not sub:
        return old.get(name) != new.get(name)
    if name.endswith(ANY):
        prefix = base + SUB
        return any(old.get(k) != new.get(k) for k in {*old, *new} if k == base or k.startswith(prefix))
    return old.get(name) != new.get(name) or old.get(base) != new.get(base)
