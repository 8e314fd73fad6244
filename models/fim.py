"""Training-example and prompt formats shared by pretraining, fine-tuning and completion (no torch here).

A fill-in-the-middle example is::

    <|ctx|>sig line\\nsig line\\n<|fim_prefix|>PREFIX<|fim_suffix|>SUFFIX<|fim_middle|>MIDDLE<|endoftext|>

where the signature lines describe the internal symbols relevant at the cursor. A causal example is
plain text followed by `<|endoftext|>`.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

EOS = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
CTX = "<|ctx|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOS, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, CTX, PAD]

# Character budgets used when making training examples (about 3.5 characters per token).
PREFIX_CHARS = (200, 900)
SUFFIX_CHARS = (0, 240)
CTX_LINES = 8

_CALLEE = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_DEFINITION = re.compile(r"\b(?:def|class)\s+$")


class ParamLike(Protocol):
    name: str
    kind: str
    has_default: bool


def compact_signature(
    name: str, params: Sequence[ParamLike], owner: str = "", is_class: bool = False, max_chars: int = 72
) -> str:
    """`Owner.name(a, b=..., *args, key=..., **kw)`: the form signatures take in prompts."""
    parts: list[str] = []
    star_done = False
    for p in params:
        if p.kind == "var_positional":
            parts.append(f"*{p.name}")
            star_done = True
        elif p.kind == "var_keyword":
            parts.append(f"**{p.name}")
        else:
            if p.kind == "keyword_only" and not star_done:
                parts.append("*")
                star_done = True
            parts.append(f"{p.name}=..." if p.has_default else p.name)
    head = f"{owner}.{name}" if owner else name
    shown: list[str] = []
    for part in parts:
        if sum(len(x) + 2 for x in shown) + len(part) > max_chars:
            shown.append("...")
            break
        shown.append(part)
    return f"{'class ' if is_class else ''}{head}({', '.join(shown)})"


def format_ctx(lines: Sequence[str]) -> str:
    return CTX + "".join(f"{line}\n" for line in lines)


def build_prompt(ctx_lines: Sequence[str], prefix: str, suffix: str) -> str:
    """The prompt text for a completion at the cursor between `prefix` and `suffix`."""
    return f"{format_ctx(ctx_lines)}{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


def fim_example(ctx_lines: Sequence[str], prefix: str, suffix: str, middle: str) -> str:
    return build_prompt(ctx_lines, prefix, suffix) + middle + EOS


def causal_example(text: str) -> str:
    return text + EOS


# ------------------------------------------------------------------ choosing a middle span


@dataclass
class Span:
    """A cursor (`start`) and the end of the text to predict (`end`), as offsets into a file."""

    start: int
    end: int
    kind: str  # 'line' | 'mid' | 'call' | 'block'


def line_offsets(text: str) -> list[int]:
    """Offsets at which the lines of `text` start."""
    return [0, *(m.end() for m in re.finditer("\n", text))]


def call_spans(text: str) -> list[tuple[int, int, str]]:
    """(callee start, end of line, callee dotted name) for every call of a dotted name (`f(`, `a.b.f(`) in
    `text`; the start is before the name's last part. Parsed with `ast`, so definitions (`def f(`),
    strings, docstrings and comments hold no calls. Text that does not parse falls back to a pattern."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return _call_spans_by_pattern(text)
    offs = line_offsets(text)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        if dotted is None or node.func.end_lineno is None or node.func.end_col_offset is None:
            continue
        last = dotted.rsplit(".", 1)[-1]
        line = node.func.end_lineno - 1
        if line >= len(offs):
            continue
        line_end = text.find("\n", offs[line])
        line_end = len(text) if line_end < 0 else line_end
        raw = text[offs[line] : line_end].encode("utf-8")  # ast columns count UTF-8 bytes
        col = len(raw[: node.func.end_col_offset - len(last.encode("utf-8"))].decode("utf-8", "replace"))
        start = offs[line] + col
        if text.startswith(last, start):
            out.append((start, line_end, dotted))
    return sorted(set(out))


def _dotted(func: ast.expr) -> str | None:
    """`a.b.c` for a chain of names, else None."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    parts.append(func.id)
    return ".".join(reversed(parts))


def _call_spans_by_pattern(text: str) -> list[tuple[int, int, str]]:
    """call_spans for text that does not parse: every `name(` outside a definition."""
    out = []
    for m in _CALLEE.finditer(text):
        dotted = m.group(1)
        defined = _DEFINITION.search(text, max(0, m.start(1) - 16), m.start(1))
        if dotted.split(".")[-1] in _KEYWORDS or defined:
            continue
        start = m.start(1) + (len(dotted) - len(dotted.split(".")[-1]))  # cursor before the last part
        eol = text.find("\n", start)
        out.append((start, len(text) if eol < 0 else eol, dotted))
    return out


_KEYWORDS = {
    "if",
    "elif",
    "while",
    "for",
    "return",
    "not",
    "and",
    "or",
    "in",
    "is",
    "print",
    "assert",
    "with",
    "yield",
}


def choose_span(
    text: str, rng: random.Random, calls: Sequence[tuple[int, int, str]] = (), offs: list[int] | None = None
) -> Span | None:
    """A random span to predict: a whole line, the rest of a line, a call's rest of line, or a block."""
    offs = offs if offs is not None else line_offsets(text)
    r = rng.random()
    if calls and r < 0.35:
        start, end, _ = calls[rng.randrange(len(calls))]
        return Span(start, end, "call")
    for _ in range(8):
        i = rng.randrange(len(offs))
        ls = offs[i]
        le = text.find("\n", ls)
        le = len(text) if le < 0 else le
        line = text[ls:le]
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if r < 0.65:
            return Span(ls + indent, le, "line")
        if r < 0.92:
            if le - (ls + indent) < 2:
                continue
            col = rng.randrange(ls + indent + 1, le)
            return Span(col, le, "mid")
        n = rng.randint(1, 4)
        j = min(len(offs) - 1, i + n)
        end = offs[j] - 1 if j > i else le
        return Span(ls + indent, max(end, le), "block")
    return None


def window(text: str, span: Span, rng: random.Random) -> tuple[str, str, str]:
    """(prefix, suffix, middle) around `span`, trimmed to the character budgets at line boundaries."""
    pchars = rng.randint(*PREFIX_CHARS)
    schars = rng.randint(*SUFFIX_CHARS)
    pstart = max(0, span.start - pchars)
    if pstart > 0:
        nl = text.find("\n", pstart)
        pstart = nl + 1 if 0 <= nl < span.start else pstart
    send = min(len(text), span.end + schars)
    if send < len(text):
        nl = text.rfind("\n", span.end, send)
        send = nl + 1 if nl > span.end else send
    return text[pstart : span.start], text[span.end : send], text[span.start : span.end]


# ------------------------------------------------------------------ same-file signatures (pretraining)


@dataclass
class _P:
    name: str
    kind: str
    has_default: bool


def _ast_params(args: ast.arguments, drop_first: bool) -> list[_P]:
    out: list[_P] = []
    pos = args.posonlyargs + args.args
    n_def = len(args.defaults)
    for i, a in enumerate(pos):
        kind = "positional_only" if i < len(args.posonlyargs) else "positional"
        out.append(_P(a.arg, kind, i >= len(pos) - n_def))
    if args.vararg:
        out.append(_P(args.vararg.arg, "var_positional", False))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=False):
        out.append(_P(a.arg, "keyword_only", d is not None))
    if args.kwarg:
        out.append(_P(args.kwarg.arg, "var_keyword", False))
    if drop_first and out and out[0].kind in ("positional", "positional_only"):
        out = out[1:]
    return out


def file_signatures(source: str) -> dict[str, list[str]]:
    """Bare name -> compact signatures of the functions, classes and methods defined in `source`."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    out: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.setdefault(node.name, []).append(compact_signature(node.name, _ast_params(node.args, False)))
        elif isinstance(node, ast.ClassDef):
            init: list[_P] = []
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    static = any(
                        isinstance(d, ast.Name) and d.id == "staticmethod" for d in item.decorator_list
                    )
                    params = _ast_params(item.args, not static)
                    if item.name == "__init__":
                        init = params
                    elif not item.name.startswith("__"):
                        sig = compact_signature(item.name, params, owner=node.name)
                        out.setdefault(item.name, []).append(sig)
            out.setdefault(node.name, []).append(compact_signature(node.name, init, is_class=True))
    return out


def same_file_ctx(sigs: dict[str, list[str]], middle: str, rng: random.Random) -> list[str]:
    """Signatures for the names used in `middle`, plus a few distractors, shuffled."""
    lines: list[str] = []
    for name in dict.fromkeys(_IDENT.findall(middle)):
        lines.extend(sigs.get(name, [])[:2])
    if sigs:
        keys = list(sigs)
        for _ in range(rng.randint(0, 4)):
            lines.append(sigs[keys[rng.randrange(len(keys))]][0])
    lines = list(dict.fromkeys(lines))[:CTX_LINES]
    rng.shuffle(lines)
    return lines


def examples_from_file(
    text: str,
    rng: random.Random,
    n_fim: int,
    ctx_for: Callable[[str, int, str], list[str]] | None = None,
    calls: Sequence[tuple[int, int, str]] | None = None,
    causal_chars: int = 2400,
) -> list[str]:
    """Causal chunks of `text` plus `n_fim` fill-in-the-middle examples.

    `ctx_for(text, cursor, middle)` gives the signature lines for a cursor (same-file signatures when
    not given); `calls` are the call sites to favour (all calls when not given).
    """
    out = [causal_example(text[i : i + causal_chars]) for i in range(0, len(text), causal_chars)]
    if n_fim <= 0 or len(text) < 40:
        return out
    sigs: dict[str, list[str]] | None = None
    call_list = call_spans(text) if calls is None else list(calls)
    offs = line_offsets(text)
    for _ in range(n_fim):
        span = choose_span(text, rng, call_list, offs)
        if span is None or span.end <= span.start:
            continue
        prefix, suffix, middle = window(text, span, rng)
        if ctx_for is not None:
            ctx = ctx_for(text, span.start, middle)
        else:
            if sigs is None:
                sigs = file_signatures(text)
            ctx = same_file_ctx(sigs, middle, rng)
        out.append(fim_example(ctx, prefix, suffix, middle))
    return out
