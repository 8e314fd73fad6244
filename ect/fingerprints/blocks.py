"""Cut a Python module into blocks with checksums.

A block is a function or method that is not nested in another function (nested defs,
lambdas and comprehensions belong to their enclosing block); its branches are blocks of their own
(see `branches`). Everything else, including
`def` lines, decorators, class bodies and module-level statements, is the module's
*skeleton*: the code that runs at import time. Checksums ignore positions, comments and
docstrings, so moving a function or editing a comment changes nothing.
"""

from __future__ import annotations

import ast
import bisect
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ect.fingerprints.branches import function_codes, scope_signature, split_digests
from ect.fingerprints.constants import tree_literals_digest

SKELETON = "<module>"
# a lambda (or function) of the module level that ran after the module's import: the skeleton's code,
# but no sign that the module was imported then (the recorder marks it apart; `ingest` merges them)
SKELETON_CALL = "<module>()"
_MEMO_DECORATORS = frozenset(
    {"lru_cache", "cache", "cached", "cached_property", "cachedmethod", "memoize", "memoized", "memoise"}
)

# the memo decorators whose cache outlives the instance and the test: a later test gets what an earlier
# one computed (`functools.lru_cache`, `functools.cache`, cachetools' `cached`, `memoize`)
SHARED_MEMO_DECORATORS = frozenset({"lru_cache", "cache", "cached", "memoize", "memoized", "memoise"})


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


@dataclass
class FileBlocks:
    """Blocks of one file version: name -> checksum, and line spans to map executed lines."""

    skeleton: str
    blocks: dict[str, str] = field(default_factory=dict)
    # (start, body_start, end, name), sorted by start; start includes decorators
    spans: list[tuple[int, int, int, str]] = field(default_factory=list)
    # memoised blocks (`@lru_cache`, `@cache`, ...): later callers get results without running them
    memo: list[str] = field(default_factory=list)
    # `constants.tree_literals_digest` of the file, when asked for (a harvester read it)
    literals: str | None = None

    def block_at(self, line: int) -> str:
        """The block an executed line belongs to (header lines belong to the skeleton)."""
        i = bisect.bisect_right(self._starts, line) - 1
        if i >= 0:
            _, body_start, end, name = self.spans[i]
            if line <= end:
                return name if line >= body_start else SKELETON
        return SKELETON

    @property
    def _starts(self) -> list[int]:
        cached = self.__dict__.get("_starts_cache")
        if cached is None:
            cached = [s[0] for s in self.spans]
            self.__dict__["_starts_cache"] = cached
        return cached

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "skeleton": self.skeleton,
            "blocks": self.blocks,
            "spans": self.spans,
            "memo": self.memo,
        }
        if self.literals is not None:
            out["literals"] = self.literals
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FileBlocks:
        raw_spans: Any = data["spans"]
        raw_blocks: Any = data["blocks"]
        spans = [(int(a), int(b), int(c), str(d)) for a, b, c, d in raw_spans]
        memo: Any = data.get("memo", [])
        found = cls(str(data["skeleton"]), {str(k): str(v) for k, v in raw_blocks.items()}, spans, [*memo])
        literals = data.get("literals")
        found.literals = str(literals) if literals is not None else None
        return found


def digest_bytes(data: bytes) -> str:
    """Content hash used everywhere for fingerprints (the import graph uses the same)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[1:] or [ast.Pass()]
    return body


def _collect(
    stmts: list[ast.stmt], prefix: str, out: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]
) -> None:
    for node in stmts:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((prefix + node.name, node))
        elif isinstance(node, ast.ClassDef):
            _collect(node.body, f"{prefix}{node.name}.", out)
        else:  # functions defined under if/try/with/for at module or class level
            for attr in ("body", "orelse", "finalbody", "handlers", "cases"):
                sub = getattr(node, attr, None)
                if isinstance(sub, list):
                    inner: list[ast.stmt] = []
                    for item in sub:
                        inner.extend(
                            getattr(item, "body", [item]) if not isinstance(item, ast.stmt) else [item]
                        )
                    _collect(inner, prefix, out)


def block_nodes(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """The block nodes of a module with their unique names (`Class.method`, `f#2` for a redefinition)."""
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    _collect(tree.body, "", found)
    seen: dict[str, int] = {}
    out = []
    for name, node in found:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append((name if count == 0 else f"{name}#{count + 1}", node))
    return out


def parse_blocks(source: bytes | str, filename: str = "<file>", literals: bool = False) -> FileBlocks:
    """Blocks of `source` (and its literals digest if asked); raises SyntaxError/ValueError when
    it does not parse."""
    tree = ast.parse(source, filename)
    codes = function_codes(tree, filename)
    result = FileBlocks(skeleton="")
    if literals:
        size = len(source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass"))
        result.literals = tree_literals_digest(tree, size)
    for key, node in block_nodes(tree):
        if any(_decorator_name(d) in _MEMO_DECORATORS for d in node.decorator_list):
            result.memo.append(key)
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        body_start = node.body[0].lineno if node.body[0].lineno > node.lineno else node.lineno
        result.spans.append((start, body_start, node.end_lineno or node.lineno, key))
        node.body = _strip_docstring(node.body)
        code = codes.get((start, node.name))
        scope = ""
        if code is not None:  # else (it does not compile) the function is one block, branches and all
            scope = scope_signature(code)
            result.blocks.update(split_digests(node, key, _digest))  # leaves placeholders in `node`
        result.blocks[key] = _digest(ast.dump(node) + scope)
        node.body = [ast.Pass()]  # the skeleton keeps the signature and decorators, not the body
    tree.body = _strip_docstring(tree.body)
    result.skeleton = _digest(ast.dump(tree))
    result.spans.sort()
    return result
