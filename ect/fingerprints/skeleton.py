"""Which module-level names a change to a module's skeleton can affect, statement by statement.

A module's skeleton (see `blocks`) is the code that runs at import time. When it changes, the
whole-module rule selects every test that imported the file. Most skeleton changes are smaller:
a constant, a default argument, a table of values. Such a change is observable only by code that
reads the names it binds, so `skeleton_delta` narrows it to those names and to the blocks of the
file that read them (or whose header changed), and `find_readers` finds the code in other files
that mentions the names (a static read always names what it reads, whatever chain of imports or
re-exports brought the value; a re-exporting `from m import NAME` is not itself a read).

The narrowing is only used when it is safe; otherwise the whole-module rule stands (None):
- every changed, added or removed top-level statement is a pure binding (assignment whose value
  has no calls except to a few pure builtins) or an undecorated `def` whose defaults alone
  changed, or that was added or removed whole (its name then counts as changed too:
  introspection names the function; a caller that ran a removed one ran its block);
- every unchanged statement that reads a changed name is itself a pure binding (its names
  become changed too) or a `def` reading it in its defaults only;
- no dunder name changes, but `__all__` when no module star-imports this one (`refine`);
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
import bisect
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ect.fingerprints import blocks as blocks_module
from ect.fingerprints.blocks import _MEMO_DECORATORS, _decorator_name, _strip_docstring, block_nodes
from ect.fingerprints.constants import rules_tag

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
# value constructors of the standard library: `HOUR = timedelta(hours=1)` is a constant
PURE_CONSTRUCTORS = {
    "datetime": frozenset({"timedelta", "datetime", "date", "time", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
}
_CONSTRUCTOR_NAMES = frozenset(PURE_CONSTRUCTORS).union(*PURE_CONSTRUCTORS.values())

_SELF_DYNAMIC = re.compile(
    rb"\b(?:globals|locals|vars|eval|exec|__import__)\s*\(|__dict__|\bdef\s+__(?:getattr|dir)__"
    rb"|\bsys\.modules\b",
    re.M,
)
DYNAMIC_CALLS = frozenset({"vars", "dir", "globals", "locals", "eval", "exec", "getmembers"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SkeletonDelta:
    """What a module-level change reaches: names whose values may differ, and blocks of the file
    that behave differently (a changed header, or a read of such a name)."""

    names: frozenset[str]
    blocks: frozenset[str]
    # functions whose defaults changed: calling one runs it (recorded); any other use may introspect
    functions: frozenset[str] = frozenset()
    # names the module no longer binds: importing one (`from m import NAME`) fails, a read too
    removed: frozenset[str] = frozenset()


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
        self._tree = tree  # for `bound`, computed only when a call must be judged
        self._bound_names: set[str] | None = None
        self._assigned: set[str] | None = None
        self.stmts, self.blocks = _skeletonise(tree)
        self.digests = [_digest(s) for s in self.stmts]
        self._constructors: dict[str, frozenset[str] | None] | None = None  # see `_constructor`
        self.top_defs: dict[str, int] = {}
        for stmt in self.stmts:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.top_defs[stmt.name] = self.top_defs.get(stmt.name, 0) + 1

    def unique_def(self, name: str) -> bool:
        """One top-level `def` of that name, whose block key is the name itself."""
        return self.top_defs.get(name) == 1 and name in self.blocks and f"{name}#2" not in self.blocks

    @property
    def bound(self) -> set[str]:
        """Every name the module binds anywhere (a shadowed builtin is not pure)."""
        if self._bound_names is None:  # the skeleton, and the block bodies `_skeletonise` cut off
            self._bound_names = self._bound(self._tree).union(*map(self._bound, self.blocks.values()))
        return self._bound_names

    @property
    def assigned(self) -> set[str]:
        """Every name the module binds anywhere other than by an import."""
        if self._assigned is None:
            self._assigned = self._bound(self._tree, False).union(
                *(self._bound(b, False) for b in self.blocks.values())
            )
        return self._assigned

    @staticmethod
    def _bound(tree: ast.AST, imports: bool = True) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.alias):
                if imports:
                    names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.arg):
                names.add(node.arg)
        return names

    def _constructor(self, name: str, attr: str | None) -> bool:
        """`timedelta(...)` imported from datetime, or `datetime.timedelta(...)`, not rebound."""
        if name not in _CONSTRUCTOR_NAMES:
            return False  # most calls: nothing to compute
        if self._constructors is None:  # name -> its module's constructors (None: a constructor)
            found: dict[str, frozenset[str] | None] = {}
            count: dict[str, int] = {}
            for node in (n for part in [self._tree, *self.blocks.values()] for n in ast.walk(part)):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in PURE_CONSTRUCTORS:
                    for a in node.names:
                        if a.asname is None and a.name in PURE_CONSTRUCTORS[node.module]:
                            found[a.name] = None
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        if a.asname is None and a.name in PURE_CONSTRUCTORS:
                            found[a.name] = PURE_CONSTRUCTORS[a.name]
                if isinstance(node, ast.alias):
                    key = (node.asname or node.name).split(".")[0]
                    count[key] = count.get(key, 0) + 1
            once = {k for k, c in count.items() if c == 1} - self.assigned  # bound by that import alone
            self._constructors = {k: v for k, v in found.items() if k in once}
        if name not in self._constructors:
            return False
        members = self._constructors[name]
        return attr is None if members is None else attr in members

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
            builtin = func.id in PURE_BUILTINS and func.id not in self.bound
            return builtin or self._constructor(func.id, None)
        if isinstance(func, ast.Attribute):
            base = func.value
            if isinstance(base, ast.Name) and self._constructor(base.id, func.attr):
                return True
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


DELTA_ALGORITHM = rules_tag(__file__, blocks_module.__file__)  # in the keys of kept deltas and reads


def delta_to_json(delta: SkeletonDelta | None) -> str:
    if delta is None:
        return "null"
    fields = (delta.names, delta.blocks, delta.functions, delta.removed)
    return json.dumps([sorted(f) for f in fields], separators=(",", ":"))


def delta_from_json(text: str) -> SkeletonDelta | None:
    """A delta `delta_to_json` wrote (None: the whole-module rule, or an entry that does not parse)."""
    try:
        value = json.loads(text)
        names, blocks, functions, removed = (frozenset(str(x) for x in f) for f in value)
    except (ValueError, TypeError):
        return None
    return SkeletonDelta(names, blocks, functions, removed)


def read_to_json(found: tuple[Reader | None, dict[str, set[str]]]) -> str:
    reader, renamed = found
    shown = None
    if reader is not None:
        blocks = {k: sorted(v) for k, v in reader.blocks.items()}
        shown = [sorted(reader.skeleton), blocks, reader.only_tests]
    return json.dumps([shown, {k: sorted(v) for k, v in renamed.items()}], separators=(",", ":"))


def read_from_json(text: str) -> tuple[Reader | None, dict[str, set[str]]] | None:
    """What `read_to_json` wrote (None: an entry that does not parse; compute it again)."""
    try:
        shown, renamed = json.loads(text)
        reader = None
        if shown is not None:
            skeleton, blocks, only_tests = shown
            reader = Reader(set(skeleton), {str(k): set(v) for k, v in blocks.items()}, bool(only_tests))
        return reader, {str(k): set(v) for k, v in renamed.items()}
    except (ValueError, TypeError, AttributeError):
        return None


@functools.lru_cache(maxsize=8)  # a selection diffs several old versions against the same current one
def _parsed(source: bytes, filename: str) -> _Module:
    """A parsed module version (never changed once built: its lazy caches only add to it)."""
    return _Module(source, filename)


def skeleton_delta(old_source: bytes, new_source: bytes, filename: str = "<file>") -> SkeletonDelta | None:
    """What the module-level change from `old_source` to `new_source` reaches (None: everything
    that imports the module, when the change cannot be narrowed safely)."""
    try:
        return _delta(_parsed(old_source, filename), _parsed(new_source, filename))
    except (_Unsafe, SyntaxError, ValueError, RecursionError):
        return None


def _pairs(old: _Module, new: _Module) -> Iterator[tuple[ast.stmt | None, ast.stmt | None]]:
    """The top-level statements that differ: (old, new) where one replaced the other in place,
    (old, None) removed, (None, new) added."""
    matcher = difflib.SequenceMatcher(a=old.digests, b=new.digests, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i2 - i1 == j2 - j1:
            yield from zip(old.stmts[i1:i2], new.stmts[j1:j2], strict=True)
            continue
        yield from ((o, None) for o in old.stmts[i1:i2])
        yield from ((None, n) for n in new.stmts[j1:j2])


def _lone(module: _Module, stmt: ast.stmt) -> tuple[set[str], bool]:
    """The names a statement added or removed on its own binds, and whether it is a `def` (a
    pure binding, or an undecorated function whose defaults and annotations are pure); else
    `_Unsafe`."""
    bound = module.binding(stmt)
    if bound is not None and not isinstance(stmt, ast.AnnAssign):
        return bound, False
    if (
        isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
        and not stmt.decorator_list
        and module.top_defs.get(stmt.name) == 1
        and all(module.pure(d) for d in _defaults(stmt))
        and all(module.pure(a) for a in _annotations(stmt))
    ):
        return {stmt.name}, True
    raise _Unsafe


def _replaced(o: ast.stmt, n: ast.stmt) -> bool:
    """Whether `n` took the place of a `def` of another name (`whisper` replaced by `murmur`): the
    old one is removed and the new one added."""
    return (
        isinstance(o, ast.FunctionDef | ast.AsyncFunctionDef)
        and isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        and o.name != n.name
    )


def _delta(old: _Module, new: _Module) -> SkeletonDelta:
    names: set[str] = set()
    blocks: set[str] = set()
    functions: set[str] = set()
    classes: set[int] = set()  # classes whose own attributes changed (their bodies read them)
    for o, n in _pairs(old, new):
        if o is None or n is None or _replaced(o, n):  # added, removed or both: what reads its names
            for module, stmt in ((new, n), (old, o)):
                if stmt is not None:
                    bound, is_def = _lone(module, stmt)
                    names |= bound
                    if is_def:
                        functions |= bound
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
        elif isinstance(o, ast.ClassDef) and isinstance(n, ast.ClassDef):
            names |= _class_change(old, new, o, n)
            classes.add(id(n))
        else:
            raise _Unsafe
    # unchanged statements that read a changed name pass the change on
    called = frozenset(functions)
    names |= functions

    def reading_def(stmt: ast.stmt) -> None:
        if (
            isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
            and new.unique_def(stmt.name)
            and not (set(_words(ast.Tuple(elts=[*stmt.decorator_list], ctx=ast.Load()), called)) & names)
            and not (_annotation_words(stmt) & names)
        ):
            blocks.add(stmt.name)
        else:
            raise _Unsafe

    _spread([s for s in new.stmts if id(s) not in classes], names, new, called, reading_def)
    if any(n.startswith("__") and n != "__all__" for n in names):  # `__all__`: see `refine`
        raise _Unsafe
    for key, node in new.blocks.items():
        if names & set(_words(node, called)):
            blocks.add(key)
    # a name the module no longer binds: its own module-level code reading it fails at import, so
    # every importer fails (`LIMIT = 3` dropped while `DOUBLE = LIMIT * 2` stays)
    gone = _top_bindings(old.stmts) - _top_bindings(new.stmts)
    if gone and (old.star or new.star or gone & {w for stmt in new.stmts for w in _words(stmt)}):
        raise _Unsafe
    return SkeletonDelta(frozenset(names), frozenset(blocks), called, frozenset(gone))


def _top_bindings(stmts: list[ast.stmt]) -> set[str]:
    """Names the module level binds: top-level statements and the bodies of `if`, `try`, `for`,
    `while`, `with`, `match` there (not function or class bodies, not comprehension variables)."""
    found: set[str] = set()
    for stmt in stmts:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(stmt.name)
            continue
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            found |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
            continue
        targets: list[ast.AST] = []
        if isinstance(stmt, ast.Assign):
            targets = list(stmt.targets)
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign | ast.For | ast.AsyncFor):
            targets = [stmt.target]
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            targets = [i.optional_vars for i in stmt.items if i.optional_vars is not None]
        elif isinstance(stmt, ast.Match):
            targets = [c.pattern for c in stmt.cases]
        for target in targets:
            found |= {
                n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
            found |= {
                n.name for n in ast.walk(target) if isinstance(n, ast.MatchAs | ast.MatchStar) and n.name
            }
            found |= {n.rest for n in ast.walk(target) if isinstance(n, ast.MatchMapping) and n.rest}
        # a walrus binds in the module's scope, even inside a comprehension (not inside a lambda)
        found |= {n.target.id for n in _shallow_walk(stmt) if isinstance(n, ast.NamedExpr)}
        nested: list[ast.stmt] = []
        for part in ("body", "orelse", "finalbody"):
            nested.extend(getattr(stmt, part, []) or [])
        for handler in getattr(stmt, "handlers", []) or []:
            if handler.name:
                found.add(handler.name)
            nested.extend(handler.body)
        for case in getattr(stmt, "cases", []) or []:
            nested.extend(case.body)
        found |= _top_bindings(nested)
    return found


def _shallow_walk(stmt: ast.stmt) -> Iterator[ast.AST]:
    """The expressions of one statement, not those of nested statements or lambdas."""
    stack: list[ast.AST] = [v for v in ast.iter_child_nodes(stmt) if not isinstance(v, ast.stmt)]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.Lambda):
            stack.extend(v for v in ast.iter_child_nodes(node) if not isinstance(v, ast.stmt))


# bases that run no code of their own when subclassed (no metaclass, no `__init_subclass__`)
PLAIN_BASES = frozenset(
    {"object", "dict", "list", "set", "frozenset", "tuple", "str", "bytes", "int", "float", "Exception",
     "ValueError", "TypeError", "KeyError", "LookupError", "RuntimeError", "AttributeError", "IndexError"}
)  # fmt: skip


def _class_change(old: _Module, new: _Module, o: ast.ClassDef, n: ast.ClassDef) -> set[str]:
    """The class attributes a change to a plain class's body binds (`WEEKDAYS = [...]`), when
    only pure class-level bindings changed; a class with decorators, keywords (a metaclass) or a
    base other than a builtin may read its namespace when it is created: `_Unsafe`."""
    for cls, module in ((o, old), (n, new)):
        if cls.decorator_list or cls.keywords:
            raise _Unsafe
        if not all(
            isinstance(b, ast.Name) and b.id in PLAIN_BASES and b.id not in module.bound for b in cls.bases
        ):
            raise _Unsafe
    if (
        o.name != n.name
        or len(o.body) != len(n.body)
        or [ast.dump(b) for b in o.bases] != [ast.dump(b) for b in n.bases]
    ):
        raise _Unsafe
    names: set[str] = set()
    for a, b in zip(o.body, n.body, strict=True):
        if _digest(a) == _digest(b):
            continue
        ab, bb = old.binding(a), new.binding(b)
        if ab is None or bb is None or isinstance(a, ast.AnnAssign) or isinstance(b, ast.AnnAssign):
            raise _Unsafe  # a method's header, a call, an annotation (`__annotations__`)
        names |= ab | bb
    _spread(n.body, names, new, frozenset(), _unsafe)  # class-level reads by the bare name
    return names


def _unsafe(stmt: ast.stmt) -> None:
    raise _Unsafe  # a method's decorator or default, a call


def _spread(
    stmts: list[ast.stmt],
    names: set[str],
    module: _Module,
    called: frozenset[str],
    other: Callable[[ast.stmt], None],
) -> None:
    """Grow `names` with what the pure bindings among `stmts` that read one of them bind, until
    nothing grows; any other statement that reads one goes to `other` (a block, or `_Unsafe`)."""
    grew = True
    while grew:
        grew = False
        for stmt in stmts:
            if not _reads(stmt, called) & names:
                continue
            bound = module.binding(stmt)
            if bound is None:
                other(stmt)
            elif not bound <= names:
                names |= bound
                grew = True


def _annotations(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.expr]:
    a = fn.args
    nodes: list[ast.expr] = [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs] if x.annotation]
    for extra in (a.vararg, a.kwarg):
        if extra is not None and extra.annotation is not None:
            nodes.append(extra.annotation)
    if fn.returns is not None:
        nodes.append(fn.returns)
    return nodes


def _annotation_words(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    return {w for node in _annotations(fn) for w in _words(node)}


_DYNAMIC_CALL = re.compile(rb"\b(?:vars|dir|globals|locals|eval|exec|getmembers)\s*\(|__dict__")
_GETATTR = re.compile(rb"\b(?:getattr|hasattr)\s*\(")


def _dynamic_offsets(source: bytes) -> list[int]:
    """Where `source` may read a namespace by a computed name: `vars(`, `dir(`, `__dict__`, ...,
    and `getattr`/`hasattr` whose second argument is not a string literal."""
    found = [m.start() for m in _DYNAMIC_CALL.finditer(source)]
    for m in _GETATTR.finditer(source):
        comma = source.find(b",", m.end(), m.end() + 2000)
        rest = source[comma + 1 : comma + 40].lstrip() if comma >= 0 else b""
        if rest[:1] not in (b"'", b'"'):
            found.append(m.start())
    return found


def read_in(
    source: bytes,
    names: set[str],
    filename: str = "<file>",
    called: frozenset[str] = frozenset(),
    removed: frozenset[str] = frozenset(),
) -> tuple[Reader | None, dict[str, set[str]]]:
    """Where the module `source` may read `names` (None: nowhere; unparseable: at module level),
    and the other names it imports them as (`from m import NAME as OTHER`).

    Text-based, so comments and strings count as reads too (more tests, never fewer); the parse
    only gives the block spans and the top-level imports (a re-export is not a read, unless the
    name is `removed`: the import fails)."""
    alternatives = b"|".join(re.escape(n.encode()) for n in sorted(names))
    hits = list(re.finditer(rb"\b(?:" + alternatives + rb")\b", source))
    dynamic = _dynamic_offsets(source)
    if not hits and not dynamic:
        return None, {}
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError, RecursionError):
        return Reader(skeleton=set(names)), {}
    renamed: dict[str, set[str]] = {}
    for m in re.finditer(rb"\b(" + alternatives + rb")\s+as\s+([A-Za-z_][A-Za-z0-9_]*)", source):
        if m[2] != m[1]:
            renamed.setdefault(m[2].decode(), set()).add(m[1].decode())
    line_starts = [0] + [m.end() for m in re.finditer(rb"\n", source)]
    spans: list[tuple[int, int, str, bool]] = []  # body lines of each block
    for key, node in block_nodes(tree):
        memo = any(_decorator_name(d) in _MEMO_DECORATORS for d in node.decorator_list)
        spans.append((node.body[0].lineno, node.end_lineno or node.lineno, key, memo))
    spans.sort()
    span_starts = [s[0] for s in spans]
    ignored = [  # top-level imports (re-exports) and `__all__`: not reads
        (stmt.lineno, stmt.end_lineno or stmt.lineno)
        for stmt in tree.body
        if isinstance(stmt, ast.Import | ast.ImportFrom) or _is_all(stmt)
    ]
    found = Reader()

    def charge(offset: int, read: set[str]) -> None:
        line = bisect.bisect_right(line_starts, offset)
        i = bisect.bisect_right(span_starts, line) - 1
        if i >= 0 and line <= spans[i][1]:
            _, _, key, memo = spans[i]
            found.blocks.setdefault(key, set()).update(read)
            if memo:
                found.skeleton |= read  # its cached results outlive the test that ran it
        elif read & removed or not any(a <= line <= b for a, b in ignored):
            found.skeleton |= read

    for m in hits:
        name = m[0].decode()
        if name in called and re.match(rb"\s*\(", source[m.end() : m.end() + 200]):
            continue  # a plain call runs the function, which records it
        charge(m.start(), {name})
    for offset in dynamic:
        charge(offset, set(names))
    if not found.skeleton and found.blocks and all(_test_block(key) for key in found.blocks):
        used = {getattr(n, "id", None) or getattr(n, "attr", None) for n in ast.walk(tree)}
        found.only_tests = all(key.rsplit(".", 1)[-1] not in used for key in found.blocks)
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
    sources: Iterable[tuple[str, bytes | None]],
    names: set[str],
    called: frozenset[str] = frozenset(),
    removed: frozenset[str] = frozenset(),
    read: Callable[..., tuple[Reader | None, dict[str, set[str]]]] | None = None,
) -> dict[str, Reader]:
    """The files among `sources` (path, content; None: unreadable or too big to parse) that may
    read `names`, directly or under the names they are imported as (reported as `names`); a name
    in `called` is not read by a plain call to it; importing a `removed` one is a read. `read` is
    `read_in` or a cache of it."""
    read = read or read_in
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
            gone = frozenset(a for a, o in origin.items() if o & removed)
            reader, renamed = read(data, set(origin), path, called_as, gone)
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


_IMPORT_STMT = re.compile(
    rb"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]*\([^)]*\)|^[ \t]*(?:from[ \t]+\S+[ \t]+)?import\b[^\n]*",
    re.M,
)
_STAR = re.compile(rb"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\*", re.M)


def module_use(source: bytes, module_names: list[str]) -> tuple[bool, bool]:
    """`_module_use` after a text-only look: when every mention of the module's possible names
    is `name.attr`, an import, or another object's `.name`, nothing escapes (no parse needed)."""
    full = set(module_names)
    bases = {n.rsplit(".", 1)[-1] for n in full}
    star = any(
        m[2].decode() in full or bool(m[1] and m[2].decode().rsplit(".", 1)[-1] in bases)
        for m in _STAR.finditer(source)
    )
    alternatives = b"|".join(re.escape(b.encode()) for b in sorted(bases | {n.split(".")[0] for n in full}))
    candidates = {m[1] for m in re.finditer(rb"\b(?:" + alternatives + rb")\s+as\s+(\w+)", source)}
    pattern = re.compile(
        rb"\b(?:" + b"|".join([alternatives, *(re.escape(c) for c in sorted(candidates))]) + rb")\b"
    )
    imports = [(m.start(), m.end()) for m in _IMPORT_STMT.finditer(source)]
    for m in pattern.finditer(source):
        before, after = source[max(0, m.start() - 1) : m.start()], source[m.end() : m.end() + 80]
        line = source[source.rfind(b"\n", 0, m.start()) + 1 : m.start()]
        if (
            before == b"."  # another object's attribute
            or re.match(rb"\s*(?:\.|=[^=])", after)  # `name.attr`, or a new binding of the name
            or b"#" in line  # a comment (or a `#` in a string: then the parse decides)
            or any(a <= m.start() < b for a, b in imports)
        ):
            continue
        return _module_use(source, module_names)  # a use the text cannot judge: parse
    return False, star


def _module_use(source: bytes, module_names: list[str]) -> tuple[bool, bool]:
    """How the importer `source` uses the module known as `module_names`: (its module object
    escapes, i.e. is used other than as `module.NAME` or as the first argument of `getattr`,
    `vars`, ... (a computed read, see `read_in`); it star-imports the module). Unparseable counts
    as escaping."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return True, False
    full = set(module_names)
    bases = {n.rsplit(".", 1)[-1] for n in full}
    bound: set[str] = set()
    star = False
    allowed: set[int] = set()  # ids of Name nodes used as `x.NAME` or as a computed read's subject
    loads: list[ast.Name] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            allowed.add(id(node.value))
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.append(node)
        elif isinstance(node, ast.Call):
            if node.args:
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
                if name in DYNAMIC_CALLS or name in ("getattr", "hasattr"):
                    allowed.add(id(node.args[0]))
        elif isinstance(node, ast.Import):
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
    escapes = any(n.id in bound and id(n) not in allowed for n in loads)
    return escapes, star
