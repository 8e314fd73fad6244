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
"""

from __future__ import annotations

import ast
import hashlib

SUFFIX = "\0constants"  # no real path holds a NUL
# the frames that harvest constants (the nearest caller of `open` that is not a helper)
HARVESTERS = ("hypothesis/internal/constants_ast.py",)
_PARSE_LIMIT = 4 * 1024 * 1024  # a bigger file is judged by its content digest alone
_HARVEST_LIMIT = 512 * 1024  # hypothesis skips files over this size


def constants_path(rel: str) -> str:
    return rel + SUFFIX


def source_of(path: str) -> str | None:
    """The file a constants read is of; None for a plain path."""
    return path[: -len(SUFFIX)] if path.endswith(SUFFIX) else None


def describe(path: str) -> str:
    source = source_of(path)
    return f"the literal constants of {source}" if source is not None else path


def is_harvester(filename: str) -> bool:
    return filename.replace("\\", "/").endswith(HARVESTERS)


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
    return hashlib.blake2b(f"{big}\n{text}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def combined(content_digest: str, data: bytes) -> str:
    return f"{content_digest}:{literals_digest(data)}"
