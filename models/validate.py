"""Validation of suggestions against the symbol index: a reference to an internal attribute, member or
function that does not exist, or a call with impossible arguments, is repaired or dropped. No torch."""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import re
import tokenize
from dataclasses import dataclass, field

from ect.models.index import SymbolIndex
from ect.models.retrieval import Resolver

_STRING = re.compile(r"""([rbuRBUfF]{0,2})('''|\"\"\"|'|")(?:\\.|(?!\2).)*?\2""", re.S)
_CHAIN = re.compile(r"(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)+)")
_BARE_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")
_BUILTINS = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls", "super", "print"}


@dataclass
class Verdict:
    ok: bool
    problems: list[str] = field(default_factory=list)
    text: str = ""  # the suggestion, repaired where a repair was possible


def _blank_strings(line: str) -> str:
    out = _STRING.sub(
        lambda m: (
            m.group(1)
            + m.group(2)
            + " " * (len(m.group(0)) - len(m.group(1)) - 2 * len(m.group(2)))
            + m.group(2)
        ),
        line,
    )
    hash_at = out.find("#")
    return out if hash_at < 0 else out[:hash_at] + " " * (len(out) - hash_at)


_ATOM_END = {"NAME", "NUMBER", "STRING", ")", "]", "}", "..."}
_SOFT_KEYWORDS = set(keyword.softkwlist) | {"type", "print", "exec"}
# f-strings are split into parts from Python 3.12 on
_FSTRING_START = getattr(tokenize, "FSTRING_START", -1)
_FSTRING_INNER = {getattr(tokenize, "FSTRING_MIDDLE", -1), getattr(tokenize, "FSTRING_END", -1)}


def _kind(tok: tokenize.TokenInfo) -> str:
    if tok.type == tokenize.NAME:
        return "KEYWORD" if keyword.iskeyword(tok.string) else "NAME"
    if tok.type == tokenize.NUMBER:
        return "NUMBER"
    if tok.type in (tokenize.STRING, _FSTRING_START):
        return "STRING"
    return tok.string if tok.type == tokenize.OP else ""


def adjacent_atoms(line: str, base: int) -> str | None:
    """The first place at or after column `base` of `line` where two operands meet with nothing between
    them (`a b`, `) x`, `... ...`): a syntax error no completion of the line can fix."""
    prev: tokenize.TokenInfo | None = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER):
                break
            if tok.type == tokenize.ERRORTOKEN:
                return None
            kind = _kind(tok)
            if tok.type in _FSTRING_INNER:
                prev = tok
                continue
            if prev is not None and tok.end[1] > base:
                before = "STRING" if prev.type in _FSTRING_INNER else _kind(prev)
                bad = (before in _ATOM_END and kind in ("NAME", "NUMBER", "...")) or (
                    before == "NAME" and kind == "STRING"
                )
                if bad and not (
                    before == "NAME"
                    and prev.start[1] == len(line) - len(line.lstrip())
                    and prev.string in _SOFT_KEYWORDS
                ):
                    return f"'{prev.string}' followed by '{tok.string}' is not valid Python"
            prev = tok
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


def _matching_paren(code: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(code)):
        ch = code[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


class Validator:
    """Checks suggestions made in one file (`module`, full `text`) at `cursor`."""

    def __init__(self, index: SymbolIndex, module: str, text: str, cursor: int) -> None:
        self.index = index
        self.resolver = Resolver(index, module, text)
        self.cursor = cursor
        line_start = text.rfind("\n", 0, cursor) + 1
        self.line_prefix = text[line_start:cursor]
        self.known_names = set(re.findall(r"[A-Za-z_]\w*", text))
        # inside a triple-quoted string (a docstring's prose): no syntax to check
        self.in_string = any(text.count(q, 0, line_start) % 2 for q in ('"""', "'''"))

    def problems(self, suggestion: str) -> list[tuple[str, int, int, str]]:
        """(message, start, end, replacement or '') for each bad reference inside `suggestion`."""
        line = self.line_prefix + suggestion.split("\n")[0]
        code = _blank_strings(line)
        base = len(self.line_prefix)
        out: list[tuple[str, int, int, str]] = []
        garbled = None if self.in_string else adjacent_atoms(line, base)
        if garbled:
            out.append((garbled, 0, len(suggestion), ""))
        for m in _CHAIN.finditer(code):
            if m.end() <= base:
                continue
            head = m.group(1)
            sym = self.resolver.resolve_name(head, self.cursor)
            pos = m.start(2)
            parts = re.findall(r"\.\s*([A-Za-z_]\w*)", m.group(2))
            chain = head
            for part in parts:
                pos = code.index(part, pos)
                if sym is None or sym.kind not in ("module", "class") or self.index.is_open(sym.qualname):
                    break
                members = self.resolver.members(sym.qualname)
                nxt = members.get(part)
                if nxt is None:
                    if pos + len(part) > base:
                        close = self.index.closest(part, [n for n in members if not n.startswith("__")], n=1)
                        out.append(
                            (
                                f"'{chain}' has no attribute '{part}'",
                                pos - base,
                                pos - base + len(part),
                                close[0] if close else "",
                            )
                        )
                    break
                sym = nxt
                chain = f"{chain}.{part}"
                pos += len(part)
            else:
                after = code[m.end() :].lstrip()
                if sym is not None and sym.kind in ("function", "method", "class") and after.startswith("("):
                    reason = self._call_problem(
                        code, m.end() + code[m.end() :].index("("), sym.qualname, base
                    )
                    if reason:
                        out.append((reason, max(0, m.start() - base), len(suggestion), ""))
        for m in _BARE_CALL.finditer(code):
            name = m.group(1)
            if m.start() < base or name in _BUILTINS:
                continue
            sym = self.resolver.resolve_name(name, self.cursor)
            if sym is None:
                others = self.known_names - {name} if self.known_names else set()
                if name not in others and not self.index.find(name) and not self._defined_in(line, name):
                    out.append((f"'{name}' is not defined", m.start() - base, m.end() - 1 - base, ""))
                continue
            if sym.kind in ("function", "method", "class"):
                reason = self._call_problem(code, m.end() - 1, sym.qualname, base)
                if reason:
                    out.append((reason, m.start() - base, len(suggestion), ""))
        return out

    def _defined_in(self, line: str, name: str) -> bool:
        return bool(re.search(rf"\b(def|class)\s+{re.escape(name)}\b|\b{re.escape(name)}\s*=", line))

    def _call_problem(self, code: str, open_at: int, qualname: str, base: int) -> str | None:
        close = _matching_paren(code, open_at)
        if close < 0 or close < base:
            return None  # incomplete or entirely before the suggestion
        try:
            call = ast.parse("f" + code[open_at : close + 1], mode="eval").body
        except SyntaxError:
            return None
        if not isinstance(call, ast.Call):
            return None
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return None
        return self.index.check_call(qualname, len(call.args), [k.arg for k in call.keywords if k.arg])

    def check(self, suggestion: str) -> Verdict:
        """Validate `suggestion`; repair unknown attributes with the closest existing member when possible."""
        found = self.problems(suggestion)
        if not found:
            return Verdict(True, [], suggestion)
        messages = [p[0] for p in found]
        if all(rep for _, _, _, rep in found):
            repaired = suggestion
            for _, start, end, rep in sorted(found, key=lambda p: -p[1]):
                repaired = repaired[:start] + rep + repaired[end:]
            if not self.problems(repaired):
                return Verdict(True, messages, repaired)
        return Verdict(False, messages, suggestion)
