"""A source read for its literal constants only, as property-based testing libraries do.

Hypothesis seeds example generation with the literals of every local module it has loaded
(`hypothesis.internal.constants_ast.constants_from_module` reads each module's source).
A test whose only use of a file's text is that harvest depends on the file's literals, not
on its code: a flipped comparison cannot change the examples, a changed constant can. The
recorder notes such a read as `constants_path(rel)`, a read of a pseudo path, and its
digest is `<content digest>:<literals digest>`, so an unchanged file is judged without
parsing it and a changed one by its literals alone.

The literals digest keeps every constant with the syntactic context a harvester can tell
apart (inside an f-string, a bare expression statement such as a docstring, the operand of
a unary minus), so whatever subset of them a harvester keeps is a function of the digest.
Hypothesis keeps far fewer: no integer between -99 and 99, no bool, no docstring, nothing
inside an f-string, no string over 20 characters (its `ConstantVisitor`). The digest also
holds one of exactly what it keeps (`kept_constants`, a replica of that filter), and a
recording whose hypothesis was seen to keep what the replica keeps (`harvester_matches`, on a
probe that exercises each rule) is judged by it: `16` -> `17` in a date formula no longer
reaches every test that draws.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import math
import sys
from typing import Any

SUFFIX = "\0constants"  # no real path holds a NUL
# the frames that harvest constants (the nearest caller of `open` that is not a helper)
HARVESTERS = ("hypothesis/internal/constants_ast.py",)
_PARSE_LIMIT = 4 * 1024 * 1024  # a bigger file is judged by its content digest alone
_HARVEST_LIMIT = 512 * 1024  # hypothesis skips files over this size
_KEPT_LIMIT = 1024  # hypothesis keeps nothing of a module with more constants (`TooManyConstants`)
HARVESTER_MODULE = "hypothesis.internal.constants_ast"


# hypothesis' choice types that draw on the harvest, by the Python type of the constants they use
KINDS = {"int": "integer", "float": "float", "bytes": "bytes", "str": "string"}


def constants_path(rel: str, kind: str | None = None) -> str:
    """The pseudo path of a read of `rel`'s literals (only those of one `KINDS` kind, if given)."""
    return rel + SUFFIX + (f":{kind}" if kind else "")


def source_of(path: str) -> str | None:
    """The file a constants read is of; None for a plain path."""
    at = path.find(SUFFIX)
    return path[:at] if at >= 0 else None


def kind_of(path: str) -> str | None:
    """The kind of literals a constants read is limited to (None: every kind)."""
    rest = path[path.find(SUFFIX) + len(SUFFIX) :] if SUFFIX in path else ""
    return rest[1:] if rest.startswith(":") else None


def describe(path: str) -> str:
    source = source_of(path)
    if source is None:
        return path
    kind = kind_of(path)
    return f"the literal constants of {source}" + (f" ({kind} draws)" if kind else "")


def is_harvester(filename: str) -> bool:
    return filename.replace("\\", "/").endswith(HARVESTERS)


@functools.lru_cache(maxsize=64)  # a source read for several kinds of draws is parsed once
def literals_digest(data: bytes) -> str:
    """A digest of every literal in `data` with its context; of the bytes when they do not parse."""
    try:
        if len(data) > _PARSE_LIMIT:
            raise ValueError("too big to parse")
        tree = ast.parse(data)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "bytes-" + hashlib.blake2b(data, digest_size=16).hexdigest()
    return tree_literals_digest(tree, len(data))


def tree_literals_digest(tree: ast.AST, size: int) -> str:
    """`literals_digest` of a parsed source of `size` bytes (call it before changing the tree)."""
    found: set[tuple[str, str, str]] = set()
    add = found.add
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_fstring = stack.pop()
        kind = type(node)
        in_fstring = in_fstring or kind is ast.JoinedStr
        for field in node._fields:
            value = getattr(node, field, None)
            for child in value if type(value) is list else (value,):
                if type(child) is ast.Constant:
                    if in_fstring:
                        context = "f"
                    elif kind is ast.Expr:
                        context = "expr"
                    elif kind is ast.UnaryOp and type(node.op) is ast.USub:  # type: ignore[attr-defined]
                        context = "neg"
                    else:
                        context = ""
                    add((context, type(child.value).__name__, repr(child.value)))
                elif isinstance(child, ast.AST):
                    stack.append((child, in_fstring))
    text = "\n".join("\t".join(item) for item in sorted(found))
    big = "big" if size > _HARVEST_LIMIT else "small"
    everything = _hex(f"{big}\n{text}")
    kept = kept_constants(tree, size)
    if kept is None:
        return everything
    by_kind = ";".join(
        f"{kind}=" + _hex("\n".join(v for t, v in sorted(kept) if t == py)) for py, kind in KINDS.items()
    )
    return f"{everything}+" + _hex("\n".join("\t".join(item) for item in sorted(kept))) + ";" + by_kind


def _hex(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def kept_constants(tree: ast.AST, size: int) -> set[tuple[str, str]] | None:
    """(type, repr) of the constants hypothesis' harvester keeps from a module of `size` bytes
    (`constants_ast.ConstantVisitor`, replicated); None when it may hit its limit (the order of
    its walk would decide)."""
    kept: set[tuple[str, str]] = set()
    if size > _HARVEST_LIMIT:
        return kept  # not read at all

    def add(value: object) -> None:
        if isinstance(value, bool) or value is None or value is Ellipsis:
            return
        if isinstance(value, complex):
            add(value.imag)
            add(value.real)
            return
        if isinstance(value, str):
            keep = not (value.isspace() or value == "" or len(value) > 20)
        elif isinstance(value, bytes):
            keep = not (value == b"" or len(value) > 50)
        elif isinstance(value, float):
            keep = not (math.isinf(value) or value == 0.0)
        elif isinstance(value, int):
            keep = not -100 < value < 100
        else:
            keep = False
        if keep:
            kept.add((type(value).__name__, repr(value)))

    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.JoinedStr):
            continue  # not visited at all
        if isinstance(node, ast.Constant):
            add(node.value)
            continue
        if isinstance(node, ast.Expr) and _is_str(node.value):
            continue  # a docstring or a bare string
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = node.operand
            value = operand.value if isinstance(operand, ast.Constant) else None
            if isinstance(value, int | float | complex) and not isinstance(value, bool):
                add(-value)
                continue
        stack.extend(ast.iter_child_nodes(node))
    return kept if len(kept) < _KEPT_LIMIT else None


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def literals_changed(recorded: str, now: str) -> bool:
    """Whether a harvester can tell the literals digests `recorded` and `now` apart: by what
    hypothesis keeps of the recorded kind (`kind=digest`) or of every kind, when both hold it,
    else by every literal."""
    old_all, _, old_kept = recorded.partition("+")
    new_all, _, new_kept = now.partition("+")
    if not old_kept or not new_kept:
        return old_all != new_all
    whole, *parts = new_kept.split(";")
    head = old_kept.split(";")[0]
    kind, eq, digest = head.partition("=")
    if eq:  # a read of one kind
        return dict(p.partition("=")[::2] for p in parts).get(kind) != digest
    return head != whole


# one of each of the harvester's rules, kept or not (`harvester_matches`)
_PROBE = '''
"""a docstring 12345"""
b"bare bytes"
54321
A = (5, 99, -99, 100, -100, 250, -(-300), True, False, None, ...)
B = (0.0, -0.0, 1e999, -1e999, 2.5, -2.5, 3j, 4+5j, 1e2)
C = ("", " ", "\\n\\t", "x", "twenty-characters-xx", "twenty-one-characters", "MO")
D = (b"", b"y", b"%s", b"0123456789012345678901234567890123456789012345678901")
E = f"{7000} and {A!r:>8}" + "tail"
F = -True
G = {"key": [-(4000), +6000]}
def h(x: "Annot" = 8000) -> None:
    "a function docstring 9000"
    match x:
        case 1234: pass
        case "case-str": pass
'''
_matches: bool | None = None


def harvester_matches() -> bool:
    """Whether the hypothesis loaded in this process keeps exactly what `kept_constants` keeps
    (a later version may keep more: then every literal counts again). False without it."""
    global _matches
    if _matches is None:
        _matches = _check_harvester(sys.modules.get(HARVESTER_MODULE))
    return _matches


def _check_harvester(module: Any) -> bool:
    try:
        if module.ConstantVisitor.CONSTANTS_LIMIT != _KEPT_LIMIT:
            return False
        theirs = {(type(v).__name__, repr(v)) for v in module._constants_from_source(_PROBE, limit=True)}
    except Exception:
        return False
    ours = kept_constants(ast.parse(_PROBE), len(_PROBE))
    return bool(ours) and ours == theirs


def rules_tag(*module_files: str) -> str:
    """Names the rules that produced a kept answer: the source of the modules that hold them and the
    Python (its ast). Part of a cache key, so that changed rules never meet old answers."""
    found = hashlib.blake2b(sys.version.encode(), digest_size=8)
    for module_file in module_files:
        try:
            with open(module_file, "rb") as fh:
                found.update(fh.read())
        except OSError:  # no source (a zipped install): the file's name at least
            found.update(module_file.encode())
    return found.hexdigest()


RULES_TAG = rules_tag(__file__)  # part of a kept `literals_digest`'s key (`recorder.read_digest`)


def combined(
    content_digest: str, data: bytes, kept: bool = False, kind: str | None = None, literals: str | None = None
) -> str:
    """A constants read's digest: the content's and the literals' (with what hypothesis keeps,
    of one kind if given, when `kept`: the recording saw its filter match the replica);
    `literals` is `literals_digest(data)` when known."""
    every, _, held = (literals or literals_digest(data)).partition("+")
    if not kept or not held:
        return f"{content_digest}:{every}"
    whole, *parts = held.split(";")
    if kind:
        found = dict(p.partition("=")[::2] for p in parts).get(kind)
        if found is not None:
            return f"{content_digest}:{every}+{kind}={found}"
    return f"{content_digest}:{every}+{whole}"
