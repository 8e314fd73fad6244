"""Which module-level names a change to a module's skeleton can affect, statement by statement.

A module's skeleton (see `blocks`) is the code that runs at import time. When it changes, the
whole-module rule selects every test that imported the file. Most skeleton changes are smaller:
a constant, a default argument, a table of values. Such a change is observable only by code that
reads the names it binds, so `skeleton_delta` narrows it to those names and to the blocks of the
file that read them (or whose header changed), and `find_readers` finds the code in other files
that mentions the names (a static read always names what it reads, whatever chain of imports or
re-exports brought the value; a re-exporting `from m import NAME` is not itself a read).

The narrowing is only used when it is safe; otherwise the whole-module rule stands (None):
- every changed top-level statement is a pure binding (assignment whose value has no calls
  except to a few pure builtins) or an undecorated `def` whose defaults alone changed (its name
  then counts as changed too: introspection names the function), statement count and order
  unchanged;
- every unchanged statement that reads a changed name is itself a pure binding (its names
  become changed too) or a `def` reading it in its defaults only;
- no dunder name changes (`__all__` steers star imports);
- the module does not read its own namespace dynamically (`globals()`, `vars()`, `__dict__`,
  `eval`/`exec`, a module `__getattr__`, `sys.modules`) and has no doctests.
- the module object does not escape (`refine` checks its importers with `module_use`): it is only
  used as `module.NAME`, not passed on (`app.config.from_object(settings)`), not named in a string
  or a config file (`DJANGO_SETTINGS_MODULE`), not star-imported into a module that escapes.
Code elsewhere that reads namespaces dynamically (`getattr` with a computed name, `vars`, `dir`,
`__dict__`, `inspect.getmembers`, ...) counts as reading every changed name.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ect.fingerprints.blocks import _MEMO_DECORATORS, _decorator_name, _strip_docstring, block_nodes

PURE_BUILTINS = frozenset(
    {
        "abs", "bool", "bytes", "chr", "complex", "dict", "divmod", "enumerate", "float", "frozenset",
        "int", "len", "list", "max", "min", "object", "ord", "range", "repr", "reversed", "round",
        "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    }
)  # fmt: skip
PURE_METHODS = frozenset(
    {
        ("str", "maketrans"), ("dict", "fromkeys"), ("bytes", "maketrans"), ("re", "compile"),
        ("re", "escape"), ("string", "Template"),
    }
)  # fmt: skip
STR_METHODS = frozenset({"join", "format", "upper", "lower", "split", "strip", "replace", "encode"})

_SELF_DYNAMIC = re.compile(
    rb"\b(?:globals|locals|vars|eval|exec|__import__)\s*\(|__dict__|\bdef\s+__(?:getattr|dir)__"
    rb"|\bsys\.modules\b",
    re.M,
)
DYNAMIC_CALLS = frozenset({"vars", "dir", "globals", "locals", "eval", "exec", "getmembers"})
_DYNAMIC_TEXT = re.compile(
    rb"\b(?:getattr|hasattr|vars|dir|globals|locals|eval|exec|getmembers)\s*\(|__dict__"
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SkeletonDelta:
    """What a module-level change reaches: names whose values may differ, and blocks of the file
    that behave differently (a changed header, or a read of such a name)."""

    names: frozenset[str]
    blocks: frozenset[str]
    # functions whose defaults changed: calling one runs it (recorded); any other use may introspect
    functions: frozenset[str] = frozenset()


@dataclass
class Reader:
    """Which changed names one file may read at module level, and in which blocks."""

    skeleton: set[str] = field(default_factory=set)
    blocks: dict[str, set[str]] = field(default_factory=dict)
    # every block that reads is a test function (`test_x`, `TestC.test_x`) that nothing else in the
    # file names: in a test module, only those tests read (helpers and fixtures would be unknown)
    only_tests: bool = False

    def names(self) -> set[str]:
        return self.skeleton.union(*self.blocks.values())


def _digest(node: ast.AST) -> str:
    return hashlib.blake2b(ast.dump(node).encode(), digest_size=8).hexdigest()


def _is_all(stmt: ast.stmt) -> bool:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


def _words(node: ast.AST, called: frozenset[str] = frozenset()) -> Iterator[str]:
    """Identifiers `node` may read: names, attribute names, words of string constants (a name in
    `called` only where it is not simply called: `f(...)` runs f, which records it)."""
    calls = {id(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)} if called else set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            if not (sub.id in called and id(sub) in calls):
                yield sub.id
        elif isinstance(sub, ast.Attribute):
            if not (sub.attr in called and id(sub) in calls):
                yield sub.attr
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and len(sub.value) < 10_000:
            yield from _WORD.findall(sub.value)
        elif isinstance(sub, ast.Global | ast.Nonlocal):
            yield from sub.names


def _dynamic(node: ast.AST) -> bool:
    """Whether `node` reads some namespace by a computed name (`getattr(m, name)`, `vars()`, ...)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "__dict__":
            return True
        if isinstance(sub, ast.Call):
            func = sub.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in DYNAMIC_CALLS:
                return True
            if name in ("getattr", "hasattr") and (
                len(sub.args) < 2 or not isinstance(sub.args[1], ast.Constant)
            ):
                return True
    return False


def _skeletonise(tree: ast.Module) -> tuple[list[ast.stmt], dict[str, ast.AST]]:
    """Top-level statements with block bodies replaced by `pass`, and the blocks by key (whole)."""
    whole: dict[str, ast.AST] = {}
    for key, node in block_nodes(tree):
        whole[key] = ast.Module(body=node.body, type_ignores=[])  # what runs when the block runs
        node.body = [ast.Pass()]
    return _strip_docstring(tree.body), whole


class _Unsafe(Exception):
    """The change needs the whole-module rule."""


class _Module:
    """One parsed module version."""

    def __init__(self, source: bytes, filename: str) -> None:
        if _SELF_DYNAMIC.search(source):
            raise _Unsafe
        tree = ast.parse(source, filename)
        self.star = any(
            isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in tree.body
        )
        self.bound = self._bound(tree)
        self.stmts, self.blocks = _skeletonise(tree)
        self.digests = [_digest(s) for s in self.stmts]
        self.top_defs: dict[str, int] = {}
        for stmt in self.stmts:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.top_defs[stmt.name] = self.top_defs.get(stmt.name, 0) + 1

    def unique_def(self, name: str) -> bool:
        """One top-level `def` of that name, whose block key is the name itself."""
        return self.top_defs.get(name) == 1 and name in self.blocks and f"{name}#2" not in self.blocks

    @staticmethod
    def _bound(tree: ast.Module) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.arg):
                names.add(node.arg)
        return names

    def pure(self, node: ast.AST | None) -> bool:
        """No side effects when evaluated: no calls but to pure builtins, no walrus, no await/yield."""
        if node is None:
            return True
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                if not self._pure_call(sub.func):
                    return False
            elif isinstance(sub, ast.NamedExpr | ast.Await | ast.Yield | ast.YieldFrom):
                return False
        return True

    def _pure_call(self, func: ast.expr) -> bool:
        if self.star:
            return False  # any builtin may be shadowed
        if isinstance(func, ast.Name):
            return func.id in PURE_BUILTINS and func.id not in self.bound
        if isinstance(func, ast.Attribute):
            base = func.value
            if isinstance(base, ast.Constant) and isinstance(base.value, str):
                return func.attr in STR_METHODS
            if isinstance(base, ast.Name) and (base.id, func.attr) in PURE_METHODS:
                # a builtin type not shadowed, or the stdlib module imported under its own name
                return base.id not in self.bound or base.id in ("re", "string")
        return False

    def binding(self, stmt: ast.stmt) -> set[str] | None:
        """The names a pure binding statement binds (empty for `pass`); None if it is not one."""
        if isinstance(stmt, ast.Pass):
            return set()
        if isinstance(stmt, ast.Assign):
            names: set[str] = set()
            for target in stmt.targets:
                elts = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
                for elt in elts:
                    if not isinstance(elt, ast.Name):
                        return None
                    names.add(elt.id)
            return names if self.pure(stmt.value) else None
        if isinstance(stmt, ast.AnnAssign | ast.AugAssign):
            if not isinstance(stmt.target, ast.Name) or stmt.value is None or not self.pure(stmt.value):
                return None
            return {stmt.target.id}
        return None


def _defaults(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.expr | None]:
    return [*fn.args.defaults, *fn.args.kw_defaults]


def _header_without_defaults(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Everything of a `def` line but the default values (decorators, names, annotations)."""
    a = fn.args
    bare = ast.arguments(
        posonlyargs=a.posonlyargs,
        args=a.args,
        vararg=a.vararg,
        kwonlyargs=a.kwonlyargs,
        kw_defaults=[None for _ in a.kw_defaults],
        kwarg=a.kwarg,
        defaults=[],
    )
    parts = [ast.dump(d) for d in fn.decorator_list]
    parts += [ast.dump(fn.returns) if fn.returns else "", ast.dump(bare), str(len(a.defaults))]
    parts.append(str([d is None for d in a.kw_defaults]))
    return "\n".join(parts)


def _reads(stmt: ast.stmt, called: frozenset[str] = frozenset()) -> set[str]:
    if isinstance(stmt, ast.Import | ast.ImportFrom) or _is_all(stmt):
        return set()
    return set(_words(stmt, called))


def skeleton_delta(old_source: bytes, new_source: bytes, filename: str = "<file>") -> SkeletonDelta | None:
    """What the module-level change from `old_source` to `new_source` reaches (None: everything
    that imports the module, when the change cannot be narrowed safely)."""
    try:
        old = _Module(old_source, filename)
        new = _Module(new_source, filename)
        return _delta(old, new)
    except (_Unsafe, SyntaxError, ValueError, RecursionError):
        return None


def _delta(old: _Module, new: _Module) -> SkeletonDelta:
    if len(old.stmts) != len(new.stmts):
        raise _Unsafe
    names: set[str] = set()
    blocks: set[str] = set()
    functions: set[str] = set()
    for o, n, od, nd in zip(old.stmts, new.stmts, old.digests, new.digests, strict=True):
        if od == nd:
            continue
        ob, nb = old.binding(o), new.binding(n)
        if ob is not None and nb is not None:
            if (
                isinstance(o, ast.AnnAssign)
                and isinstance(n, ast.AnnAssign)
                and ast.dump(o.annotation) != ast.dump(n.annotation)
            ):
                raise _Unsafe  # module __annotations__ changed
            names |= ob | nb
        elif (
            isinstance(o, ast.FunctionDef | ast.AsyncFunctionDef)
            and type(o) is type(n)
            and isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and o.name == n.name
            and new.unique_def(n.name)
            and old.unique_def(o.name)
            and not n.decorator_list  # a decorator may read the defaults (typer, FastAPI, ...)
            and _header_without_defaults(o) == _header_without_defaults(n)
            and all(new.pure(d) for d in _defaults(n))
        ):
            blocks.add(n.name)
            functions.add(n.name)  # code that introspects it (`inspect.signature(f)`) names it
        else:
            raise _Unsafe
    # unchanged statements that read a changed name pass the change on
    called = frozenset(functions)
    names |= functions
    grew = True
    while grew:
        grew = False
        for stmt in new.stmts:
            read = _reads(stmt, called) & names
            if not read:
                continue
            bound = new.binding(stmt)
            if bound is not None:
                if not bound <= names:
                    names |= bound
                    grew = True
            elif (
                isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
                and new.unique_def(stmt.name)
                and not (set(_words(ast.Tuple(elts=[*stmt.decorator_list], ctx=ast.Load()), called)) & names)
                and not (_annotation_words(stmt) & names)
            ):
                blocks.add(stmt.name)
            else:
                raise _Unsafe
    if any(n.startswith("__") for n in names):
        raise _Unsafe
    for key, node in new.blocks.items():
        if names & set(_words(node, called)):
            blocks.add(key)
    return SkeletonDelta(frozenset(names), frozenset(blocks), called)


def _annotation_words(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = fn.args
    nodes: list[ast.AST] = [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs] if x.annotation]
    for extra in (a.vararg, a.kwarg):
        if extra is not None and extra.annotation is not None:
            nodes.append(extra.annotation)
    if fn.returns is not None:
        nodes.append(fn.returns)
    return {w for node in nodes for w in _words(node)}


def aliases(tree: ast.Module, names: set[str]) -> dict[str, set[str]]:
    """Other names that `from m import NAME as OTHER` binds to some of `names`: OTHER -> {NAME}."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name in names and a.asname and a.asname != a.name:
                    found.setdefault(a.asname, set()).add(a.name)
    return found


def read_in(
    source: bytes, names: set[str], filename: str = "<file>", called: frozenset[str] = frozenset()
) -> tuple[Reader | None, dict[str, set[str]]]:
    """Where the module `source` may read `names` (None: nowhere; unparseable: at module level),
    and the other names it imports them as (`from m import NAME as OTHER`)."""
    pattern = re.compile(rb"\b(?:" + b"|".join(re.escape(n.encode()) for n in sorted(names)) + rb")\b")
    if not pattern.search(source) and not _DYNAMIC_TEXT.search(source):
        return None, {}
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError, RecursionError):
        return Reader(skeleton=set(names)), {}
    renamed = aliases(tree, names)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}  # before bodies are dropped
    used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    found = Reader()
    for key, node in block_nodes(tree):
        body = ast.Module(body=node.body, type_ignores=[])
        hit = set(names) if _dynamic(body) else names & set(_words(body, called))
        if hit:
            found.blocks[key] = hit
            if any(_decorator_name(d) in _MEMO_DECORATORS for d in node.decorator_list):
                found.skeleton |= hit  # its cached results outlive the test that ran it
        node.body = [ast.Pass()]
    for stmt in tree.body:
        found.skeleton |= names & _reads(stmt, called)
        if not isinstance(stmt, ast.Import | ast.ImportFrom) and _dynamic(stmt):
            found.skeleton |= names
    found.only_tests = not found.skeleton and all(
        _test_block(key) and key.rsplit(".", 1)[-1] not in used for key in found.blocks
    )
    return (found if found.skeleton or found.blocks else None), renamed


def _test_block(key: str) -> bool:
    """`test_x` or `TestC.test_x` (a block pytest collects as a test by default)."""
    parts = key.split(".")
    return (
        parts[-1].startswith("test")
        and "#" not in key
        and (len(parts) == 1 or (len(parts) == 2 and parts[0].startswith("Test")))
    )


def test_function(nodeid: str) -> str:
    """The block a test's node id runs: `file.py::TestC::test_x[1]` -> `TestC.test_x`."""
    return nodeid.split("::", 1)[-1].split("[", 1)[0].replace("::", ".")


def find_readers(
    sources: Iterable[tuple[str, bytes | None]], names: set[str], called: frozenset[str] = frozenset()
) -> dict[str, Reader]:
    """The files among `sources` (path, content; None: unreadable or too big to parse) that may
    read `names`, directly or under the names they are imported as (reported as `names`); a name
    in `called` is not read by a plain call to it."""
    origin: dict[str, set[str]] = {n: {n} for n in names}
    files = list(sources)
    for _ in range(5):  # aliases of aliases: a few rounds at most
        found: dict[str, Reader] = {}
        grew = False
        for path, data in files:
            if data is None:
                found[path] = Reader(skeleton=set(names))
                continue
            called_as = frozenset(a for a, o in origin.items() if o & called)
            reader, renamed = read_in(data, set(origin), path, called_as)
            for alias, sources_of in renamed.items():
                before = origin.get(alias, set())
                after = before | {o for n in sources_of for o in origin[n]}
                if after != before:
                    origin[alias] = after
                    grew = True
            if reader is not None:
                reader.skeleton = {o for n in reader.skeleton for o in origin[n]}
                reader.blocks = {k: {o for n in v for o in origin[n]} for k, v in reader.blocks.items()}
                found[path] = reader
        if not grew:
            return found
    return {path: Reader(skeleton=set(names)) for path, _ in files}


def module_use(source: bytes, module_names: list[str]) -> tuple[bool, bool]:
    """How the importer `source` uses the module known as `module_names`: (its module object
    escapes, i.e. is used other than as `module.NAME`; it star-imports the module). Unparseable
    counts as escaping."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return True, False
    full = set(module_names)
    bases = {n.rsplit(".", 1)[-1] for n in full}
    bound: set[str] = set()
    star = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in full:
                    bound.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for a in node.names:
                if a.name == "*":
                    star = star or module in full or bool(node.level and module.rsplit(".", 1)[-1] in bases)
                elif a.name in bases and (node.level or f"{module}.{a.name}" in full):
                    bound.add(a.asname or a.name)
    if not bound:
        return False, star
    # `module.NAME`, and the first argument of `getattr`/`vars`/... (a dynamic read: see `read_in`)
    seen_uses = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and call.args:
            name = getattr(call.func, "id", None) or getattr(call.func, "attr", "")
            if name in DYNAMIC_CALLS or name in ("getattr", "hasattr"):
                seen_uses.add(id(call.args[0]))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Name)
            and node.id in bound
            and isinstance(node.ctx, ast.Load)
            and id(node) not in seen_uses
        ):
            return True, star
    return False, star
