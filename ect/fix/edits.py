"""Source edits made with libcst (formatting and comments preserved). Each returns the new text or None."""

from __future__ import annotations

import ast
import functools

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import MetadataWrapper, PositionProvider


@functools.lru_cache(maxsize=16)
def parse(source: str) -> cst.Module | None:
    """The libcst tree of `source` (cached: candidates for one failure all start from the same text)."""
    try:
        return cst.parse_module(source)
    except (cst.ParserSyntaxError, RecursionError, ValueError):
        return None


@functools.lru_cache(maxsize=8)
def _wrapper(source: str) -> MetadataWrapper | None:
    """A metadata wrapper over the cached tree (no copy), so positions are computed once per text."""
    tree = parse(source)
    return MetadataWrapper(tree, unsafe_skip_copy=True) if tree is not None else None


def _import_line(module: str, name: str | None, asname: str | None, level: int) -> str:
    alias = f" as {asname}" if asname else ""
    if name is None:
        return f"import {module}{alias}"
    return f"from {'.' * level}{module} import {name}{alias}"


def add_import(
    source: str,
    module: str,
    name: str | None,
    asname: str | None = None,
    level: int = 0,
    file_module: str = "",
) -> str | None:
    """Add `from module import name [as asname]` (or `import module`): merged into an existing
    `from module import ...` at the top level, else as a new statement after the top-level imports."""
    tree = parse(source)
    if tree is None:
        return None
    body = list(tree.body)
    last_import = -1
    first_code = 0
    for i, stmt in enumerate(body):
        inner = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and stmt.body else None
        if isinstance(inner, (cst.Import, cst.ImportFrom)):
            last_import = i
            if (
                name is not None
                and isinstance(inner, cst.ImportFrom)
                and not isinstance(inner.names, cst.ImportStar)
                and len(inner.relative) == level
                and (get_full_name_for_node(inner.module) if inner.module else "") == module
            ):
                if any(
                    get_full_name_for_node(a.name) == name
                    and (
                        (a.asname.name.value if a.asname and isinstance(a.asname.name, cst.Name) else None)
                        == asname
                    )
                    for a in inner.names
                ):
                    return None  # already imported
                names = list(inner.names)
                names[-1] = names[-1].with_changes(
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                )
                alias = cst.ImportAlias(cst.Name(name), cst.AsName(cst.Name(asname)) if asname else None)
                body[i] = stmt.with_changes(body=[inner.with_changes(names=[*names, alias])])
                return tree.with_changes(body=body).code
        elif i == first_code and isinstance(inner, cst.Expr) and isinstance(inner.value, cst.SimpleString):
            first_code = i + 1  # after the module docstring
    new = cst.parse_statement(_import_line(module, name, asname, level) + "\n")
    at = last_import + 1 if last_import >= 0 else first_code
    if at == 0 and tree.header:
        new = new.with_changes(leading_lines=[])
    body.insert(at, new)
    if at == 0:
        return tree.with_changes(body=body).code
    return tree.with_changes(body=body).code


class _Positioned(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, line: int | None) -> None:
        super().__init__()
        self.line = line
        self.changed = 0

    def _start(self, node: cst.CSTNode) -> int:
        return int(self.get_metadata(PositionProvider, node).start.line)

    def _covers(self, node: cst.CSTNode) -> bool:
        if self.line is None:
            return True
        pos = self.get_metadata(PositionProvider, node)
        return int(pos.start.line) <= self.line <= int(pos.end.line)


def _run(source: str, transformer: _Positioned) -> str | None:
    wrapper = _wrapper(source)
    if wrapper is None:
        return None
    try:
        new = wrapper.visit(transformer)
    except RecursionError:
        return None
    return new.code if transformer.changed and new.code != source else None


class _RenameName(_Positioned):
    """Rename loads of a bare name (not attributes, keywords, parameters or definitions)."""

    def __init__(self, old: str, new: str, line: int | None) -> None:
        super().__init__(line)
        self.old, self.new = old, new
        self.skip: set[int] = set()

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.skip.add(id(node.attr))

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.skip.add(id(node.keyword))

    def visit_Param(self, node: cst.Param) -> None:
        self.skip.add(id(node.name))

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.skip.add(id(node.name))

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.skip.add(id(node.name))

    def visit_ImportAlias(self, node: cst.ImportAlias) -> bool:
        return False

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if (
            original_node.value == self.old
            and id(original_node) not in self.skip
            and (self.line is None or self._start(original_node) == self.line)
        ):
            self.changed += 1
            return updated_node.with_changes(value=self.new)
        return updated_node


def rename_name(source: str, old: str, new: str, line: int | None = None) -> str | None:
    """Rename uses of the bare name `old` to `new` (on `line` only, when given)."""
    return _run(source, _RenameName(old, new, line))


def bound_names(source: str) -> set[str]:
    """Every name the file binds anywhere (assignments, parameters, definitions, imports, loop targets)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
    return out


def callees_with_keyword(source: str, line: int, keyword: str) -> list[str]:
    """Names of the functions called with `keyword=` in calls spanning `line`."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return []
    out = []
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and n.lineno <= line <= (n.end_lineno or n.lineno)
            and any(k.arg == keyword for k in n.keywords)
        ):
            fn = n.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name:
                out.append(name)
    return out


def keyword_names(source: str) -> set[str]:
    """Every keyword-argument name used in a call in the file."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return set()
    return {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg}


class _RenameAttr(_Positioned):
    def __init__(self, old: str, new: str, line: int | None) -> None:
        super().__init__(line)
        self.old, self.new = old, new

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        if original_node.attr.value == self.old and (
            self.line is None or self._start(original_node.attr) == self.line
        ):
            self.changed += 1
            return updated_node.with_changes(attr=updated_node.attr.with_changes(value=self.new))
        return updated_node


def rename_attribute(source: str, old: str, new: str, line: int | None = None) -> str | None:
    """Rename `.old` attribute accesses to `.new` on `line` (anywhere when nothing matches there)."""
    return _run(source, _RenameAttr(old, new, line)) or (
        _run(source, _RenameAttr(old, new, None)) if line is not None else None
    )


class _RenameKeyword(_Positioned):
    def __init__(self, old: str, new: str, line: int | None) -> None:
        super().__init__(line)
        self.old, self.new = old, new

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if not self._covers(original_node):
            return updated_node
        args = []
        hit = False
        for arg in updated_node.args:
            if arg.keyword is not None and arg.keyword.value == self.old and not hit:
                arg = arg.with_changes(keyword=arg.keyword.with_changes(value=self.new))
                hit = True
            args.append(arg)
        if hit:
            self.changed += 1
            return updated_node.with_changes(args=args)
        return updated_node


def rename_keyword(source: str, old: str, new: str, line: int | None = None) -> str | None:
    """Rename the keyword argument `old=` to `new=` in calls spanning `line`."""
    return _run(source, _RenameKeyword(old, new, line))


class _DropArg(_Positioned):
    def __init__(self, callee: str, index: int, line: int | None) -> None:
        super().__init__(line)
        self.callee, self.index = callee, index

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        name = get_full_name_for_node(original_node.func) or ""
        if self.changed or not self._covers(original_node) or name.split(".")[-1] != self.callee:
            return updated_node
        positional = [i for i, a in enumerate(updated_node.args) if a.keyword is None and not a.star]
        if self.index >= len(positional):
            return updated_node
        drop = positional[self.index]
        args = [a for i, a in enumerate(updated_node.args) if i != drop]
        if args:
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        self.changed += 1
        return updated_node.with_changes(args=args)


def drop_positional(source: str, callee: str, index: int, line: int | None = None) -> str | None:
    """Remove the `index`-th positional argument of a call to `callee` spanning `line`."""
    return _run(source, _DropArg(callee, index, line))


def positional_count(source: str, callee: str, line: int) -> int:
    """How many plain positional arguments the call to `callee` on `line` passes (0 when none found)."""
    tree = parse(source)
    if tree is None:
        return 0
    found: list[int] = []

    class V(cst.CSTVisitor):
        METADATA_DEPENDENCIES = (PositionProvider,)

        def visit_Call(self, node: cst.Call) -> None:
            pos = self.get_metadata(PositionProvider, node)
            name = get_full_name_for_node(node.func) or ""
            if pos.start.line <= line <= pos.end.line and name.split(".")[-1] == callee:
                found.append(sum(1 for a in node.args if a.keyword is None and not a.star))

    wrapper = _wrapper(source)
    if wrapper is not None:
        wrapper.visit(V())
    return found[-1] if found else 0


def resolve_from(file_module: str, is_package: bool, node: cst.ImportFrom) -> str:
    """The absolute module an ImportFrom names."""
    mod = get_full_name_for_node(node.module) if node.module is not None else ""
    level = len(node.relative)
    if not level:
        return mod or ""
    parts = file_module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: max(0, len(parts) - (level - 1))]
    base = ".".join(parts)
    return f"{base}.{mod}" if base and mod else (base or mod or "")


def _imports_from(tree: cst.Module, module: str) -> bool:
    """Whether a top-level `from module import ...` (absolute, not `*`) exists."""
    for stmt in tree.body:
        inner = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and stmt.body else None
        if (
            isinstance(inner, cst.ImportFrom)
            and not inner.relative
            and not isinstance(inner.names, cst.ImportStar)
            and inner.module is not None
            and get_full_name_for_node(inner.module) == module
        ):
            return True
    return False


def move_from_import(
    source: str,
    file_module: str,
    is_package: bool,
    old_module: str,
    name: str,
    new_module: str,
    new_name: str,
    alias: bool = True,
) -> str | None:
    """Turn `from old_module import name` into `from new_module import new_name [as name]`.

    `alias`: keep the old local name with `as name` when the name changes (else the caller renames uses).
    """
    tree = parse(source)
    if tree is None:
        return None
    state: dict[str, object] = {"removed": False, "inplace": False}
    merge = new_module != old_module and _imports_from(tree, new_module)

    class T(cst.CSTTransformer):
        def leave_ImportFrom(
            self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
        ) -> cst.ImportFrom | cst.RemovalSentinel:
            if isinstance(updated_node.names, cst.ImportStar) or state["removed"] or state["inplace"]:
                return updated_node
            if resolve_from(file_module, is_package, original_node) != old_module:
                return updated_node
            aliases = list(updated_node.names)
            hits = [a for a in aliases if get_full_name_for_node(a.name) == name]
            if not hits:
                return updated_node
            hit = hits[0]
            if new_module == old_module:
                asname = hit.asname
                if asname is None and new_name != name and alias:
                    asname = cst.AsName(name=cst.Name(name))
                state["inplace"] = True
                return updated_node.with_changes(
                    names=[
                        a.with_changes(name=cst.Name(new_name), asname=asname) if a is hit else a
                        for a in aliases
                    ]
                )
            if len(aliases) == 1 and merge:  # merged into the existing `from new_module import ...`
                state["removed"] = True
                state["asname"] = (
                    hit.asname.name.value
                    if hit.asname and isinstance(hit.asname.name, cst.Name)
                    else (name if new_name != name and alias else None)
                )
                return cst.RemoveFromParent()
            if len(aliases) == 1:
                asname = hit.asname
                if asname is None and new_name != name and alias:
                    asname = cst.AsName(name=cst.Name(name))
                state["inplace"] = True
                names = [hit.with_changes(name=cst.Name(new_name), asname=asname)]
                if new_module == old_module:
                    return updated_node.with_changes(names=names)
                module_node = cst.parse_expression(new_module)
                assert isinstance(module_node, (cst.Attribute, cst.Name))
                return updated_node.with_changes(module=module_node, relative=[], names=names)
            rest = [a for a in aliases if a is not hit]
            rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            state["removed"] = True
            state["asname"] = (
                hit.asname.name.value
                if hit.asname and isinstance(hit.asname.name, cst.Name)
                else (name if new_name != name and alias else None)
            )
            return updated_node.with_changes(names=rest)

    new_tree = tree.visit(T())
    if state["inplace"]:
        return new_tree.code
    if not state["removed"]:
        return None
    asname = state.get("asname")
    return (
        add_import(
            new_tree.code,
            new_module,
            new_name,
            asname if isinstance(asname, str) else None,
            file_module=file_module,
        )
        or new_tree.code
    )


def rename_module(source: str, file_module: str, is_package: bool, old: str, new: str) -> str | None:
    """Point imports of module `old` (and dotted uses `old.x`) at module `new`."""
    tree = parse(source)
    if tree is None:
        return None
    count = [0]
    new_expr = cst.parse_expression(new)

    class T(cst.CSTTransformer):
        def leave_ImportFrom(
            self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
        ) -> cst.ImportFrom:
            target = resolve_from(file_module, is_package, original_node)
            if target == old or target.startswith(old + "."):
                module = new + target[len(old) :]
                node = cst.parse_expression(module)
                assert isinstance(node, (cst.Attribute, cst.Name))
                count[0] += 1
                return updated_node.with_changes(module=node, relative=[])
            return updated_node

        def leave_ImportAlias(
            self, original_node: cst.ImportAlias, updated_node: cst.ImportAlias
        ) -> cst.ImportAlias:
            full = get_full_name_for_node(original_node.name) or ""
            if full == old or full.startswith(old + "."):
                node = cst.parse_expression(new + full[len(old) :])
                assert isinstance(node, (cst.Attribute, cst.Name))
                count[0] += 1
                return updated_node.with_changes(name=node)
            return updated_node

        def leave_Attribute(
            self, original_node: cst.Attribute, updated_node: cst.Attribute
        ) -> cst.BaseExpression:
            if "." in old and get_full_name_for_node(original_node) == old:
                count[0] += 1
                return new_expr
            return updated_node

    out = tree.visit(T())
    return out.code if count[0] and out.code != source else None
