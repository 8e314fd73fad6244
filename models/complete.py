"""The completion engine: FIM prompt with retrieved internal signatures, greedy decoding with a KV cache,
validation against the symbol index (a hallucinated internal symbol is repaired or never shown)."""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ect.models.fim import CTX, EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, SPECIAL_TOKENS
from ect.models.index import SymbolIndex
from ect.models.prior import DEFAULT_WEIGHTS, NamePrior, PriorWeights
from ect.models.retrieval import RECEIVER, Resolver, context_lines
from ect.models.settings import ModelSettings
from ect.models.validate import Validator


@dataclass
class Candidate:
    text: str
    score: float  # mean log-probability of the generated tokens
    repaired: bool = False


@dataclass
class Completion:
    candidates: list[Candidate]
    raw: list[str] = field(default_factory=list)  # every generated candidate, before validation
    rejected: list[tuple[str, list[str]]] = field(default_factory=list)  # (candidate, problems)
    context: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    prompt_tokens: int = 0


_WORD = re.compile(r"\w*")
_TYPED = re.compile(r"(?<!\w)[A-Za-z_]\w*$")


def offset_of(text: str, line: int, col: int) -> int:
    """Offset of 1-based (line, col) in `text`; ValueError when outside the text."""
    if line < 1 or col < 1:
        raise ValueError("line and column are 1-based")
    lines = text.split("\n")
    if line > len(lines):
        raise ValueError(f"line {line} is past the end of the file ({len(lines)} lines)")
    if col - 1 > len(lines[line - 1]):
        raise ValueError(f"column {col} is past the end of line {line} ({len(lines[line - 1])} characters)")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col - 1


def _after(need: str, piece: str) -> str:
    """What of the typed text `need` is left to write after `piece`."""
    return need[len(piece) :] if need.startswith(piece) else ""


def _bracket_depth(text: str) -> int:
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth


class Completer:
    """Completes code with one causal LM and the repository's symbol index."""

    def __init__(
        self,
        model: Any,
        tok: Any,
        index: SymbolIndex | None,
        settings: ModelSettings | None = None,
        fast: bool = True,
        precision: str = "auto",
        prior: PriorWeights | None = DEFAULT_WEIGHTS,
        member_list: bool = True,
    ) -> None:
        """`member_list`: put the signature list in the prompt that ranks a receiver's members. The base
        needs it; a model fine-tuned on the repository ranks the members it was trained on better without
        it (the list pulls it towards the listed ones: models/README, "The list and member calls")."""
        import torch

        self.torch = torch
        self.model = model.eval()
        self.tok = tok
        self.index = index
        self.settings = settings or ModelSettings()
        self.prior = prior
        self.member_list = member_list
        tau = self.settings.min_token_prob
        self._min_logprob = math.log(tau) if tau > 0 else float("-inf")
        self.rank_names = True  # rank a receiver's members as whole names (else: constrained greedy)
        self.rank_limit = 256  # names ranked in one pass (the editor server asks for fewer: latency)
        self.should_stop: Callable[[], bool] = lambda: False  # checked per token: a caller's cancellation
        self.special = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        self.stop_ids = {i for i in self.special.values() if i is not None}
        if tok.eos_token_id is not None:
            self.stop_ids.add(tok.eos_token_id)
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.keep_arg = "logits_to_keep" if "logits_to_keep" in params else None
        self._line_cache: dict[str, list[int]] = {}
        self._pieces: dict[int, str] = {}
        self._name_cache: dict[str, list[int]] = {}
        self.device = next(model.parameters()).device
        self.fast: Any = None
        if fast:
            from ect.models.fastllama import FastLlama, supports

            if supports(model):
                self.fast = FastLlama(model, precision=precision)
        self._terminal: Any = None

    def _ids(self, text: str) -> list[int]:
        ids: list[int] = self.tok(text, add_special_tokens=False)["input_ids"]
        return ids

    def _ctx_ids(self, lines: list[str]) -> list[int]:
        out: list[int] = []
        for line in lines:
            ids = self._line_cache.get(line)
            if ids is None:
                ids = self._ids(line + "\n")
                if len(self._line_cache) < 20000:
                    self._line_cache[line] = ids
            if len(out) + len(ids) > self.settings.ctx_tokens:
                break
            out.extend(ids)
        return out

    def prompt_ids(self, text: str, cursor: int, ctx: list[str], prefix_end: int | None = None) -> list[int]:
        """The FIM prompt for `cursor`; the prefix stops at `prefix_end` (default: the cursor)."""
        s = self.settings
        end = cursor if prefix_end is None else prefix_end
        prefix_ids = self._ids(text[max(0, end - s.prefix_tokens * 6) : end])[-s.prefix_tokens :]
        suffix_ids = (
            self._ids(text[cursor : cursor + s.suffix_tokens * 6])[: s.suffix_tokens]
            if s.suffix_tokens
            else []
        )
        sp = self.special
        return [
            sp[CTX],
            *self._ctx_ids(ctx),
            sp[FIM_PREFIX],
            *prefix_ids,
            sp[FIM_SUFFIX],
            *suffix_ids,
            sp[FIM_MIDDLE],
        ]

    def _step(self, ids: list[int], cache: Any) -> tuple[Any, Any]:
        torch = self.torch
        if self.fast is not None:  # lean path: the cache lives in the FastLlama object
            return self.fast.forward(ids, 0 if cache is None else None), True
        kwargs: dict[str, Any] = {"use_cache": True}
        if cache is not None:
            kwargs[self.cache_arg] = cache
        if self.keep_arg:
            kwargs[self.keep_arg] = 1
        out = self.model(input_ids=torch.tensor([ids], device=self.device), **kwargs)
        new_cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
        return torch.log_softmax(out.logits[0, -1].float(), dim=-1), new_cache

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self.tok.decode([token], skip_special_tokens=False)
            self._pieces[token] = piece
        return piece

    def _pick(
        self, logprobs: Any, ident: str | None, allowed: list[str] | None, exclude: set[int]
    ) -> tuple[int, str | None]:
        """The best token, restricted while an identifier after an internal receiver is being written to
        prefixes of that receiver's real members. Returns (token, identifier so far or None when done)."""
        if ident is None or not allowed:
            for t in self.torch.topk(logprobs, len(exclude) + len(self.stop_ids) + 1).indices.tolist():
                if t not in exclude:
                    return int(t), None
            return int(logprobs.argmax()), None
        for t in self.torch.topk(logprobs, 64).indices.tolist():
            if t in exclude or t in self.stop_ids:
                continue
            piece = self._piece(t)
            head = _WORD.match(piece).group(0)  # type: ignore[union-attr]
            cand = (ident or "") + head
            if len(head) == len(piece):
                if cand and any(a.startswith(cand) for a in allowed):
                    return int(t), cand
            elif cand in allowed:
                return int(t), None
        # nothing in the top tokens fits: take the real member whose next token the model likes best
        best: tuple[float, int, str | None] | None = None
        for name in allowed:
            if name.startswith(ident or "") and len(name) > len(ident or ""):
                first_ids = self._name_ids(name[len(ident or "") :])
                if first_ids and first_ids[0] not in exclude:
                    t = first_ids[0]
                    piece = self._piece(t)
                    score = float(logprobs[t])
                    if best is None or score > best[0]:
                        done = len(piece) >= len(name) - len(ident or "")
                        best = (score, t, None if done else (ident or "") + piece)
        if best is not None:
            return best[1], best[2]
        return int(logprobs.argmax()), None

    def _pick_healed(self, logprobs: Any, need: str, exclude: set[int]) -> int:
        """The best token that agrees with `need`, the typed part of a word still to be written again
        (token healing: the prompt stops at the word's start, as training examples do)."""
        for t in self.torch.topk(logprobs, 256).indices.tolist():
            if t in exclude or t in self.stop_ids:
                continue
            piece = self._piece(t)
            if piece and (piece.startswith(need) or need.startswith(piece)):
                return int(t)
        return self._name_ids(need)[0]

    def _name_ids(self, text: str) -> list[int]:
        ids = self._name_cache.get(text)
        if ids is None:
            ids = self._ids(text)
            self._name_cache[text] = ids
        return ids

    def _continue(
        self,
        first: int,
        logp: float,
        cache: Any,
        line_prefix: str,
        multiline: bool,
        ident: str | None = None,
        allowed: list[str] | None = None,
        need: str = "",
    ) -> tuple[str, float]:
        ids = [first]
        total = logp
        text = ""
        typed_len, written = len(need), len(self._piece(first))
        need = _after(need, self._piece(first))
        for _ in range(self.settings.max_new_tokens):
            text = self.tok.decode(ids, skip_special_tokens=False)
            if "\n" in text:
                head, _, _ = text.partition("\n")
                if not multiline or _bracket_depth(line_prefix + head) <= 0 or text.count("\n") > 8:
                    return head, total / len(ids)
            if len(ids) >= self.settings.max_new_tokens or self.should_stop():
                break
            logprobs, cache = self._step([ids[-1]], cache)
            if need:
                nxt = self._pick_healed(logprobs, need, set())
                need = _after(need, self._piece(nxt))
            else:
                nxt, ident = self._pick(logprobs, ident, allowed, set())
                if nxt in self.stop_ids:
                    break
                visible = written > typed_len  # the first shown token is always taken
                if visible and ident is None and float(logprobs[nxt]) < self._min_logprob:
                    break  # the model doubts what comes next: show only the part it is sure of
            total += float(logprobs[nxt])
            ids.append(nxt)
            written += len(self._piece(nxt))
        text = self.tok.decode(ids, skip_special_tokens=False)
        return text if multiline else text.split("\n")[0], total / len(ids)

    def member_names(self, text: str, cursor: int, module: str) -> tuple[str, list[str]] | None:
        """(typed part, member names) when the cursor follows `receiver.` of an internal module or class.
        Private names of another module are left out unless the typed part asks for them."""
        if self.index is None:
            return None
        line_prefix = text[text.rfind("\n", 0, cursor) + 1 : cursor]
        m = RECEIVER.search(line_prefix)
        if not m:
            return None
        recv = Resolver(self.index, module, text).resolve_chain(m.group(1), cursor)
        if recv is None or recv.kind not in ("module", "class") or self.index.is_open(recv.qualname):
            return None
        typed = m.group(2)
        names = [
            x.name
            for x in self.index.members(recv.qualname)
            if x.name.startswith(typed)
            and not (x.name.startswith("__") and not typed.startswith("__"))
            and not (
                recv.kind == "module"
                and recv.qualname != module
                and x.name.startswith("_")
                and not typed.startswith("_")
            )
        ]
        return (typed, names) if names else None

    def _terminal_mask(self) -> Any:
        """Tokens that can follow a complete identifier (their text starts with a non-word character)."""
        if self._terminal is None:
            flags = []
            for t in range(self.fast.embed.shape[0]):
                piece = self._piece(t)
                flags.append(t in self.stop_ids or not piece or not (piece[0].isalnum() or piece[0] == "_"))
            self._terminal = self.torch.tensor(flags, dtype=self.torch.bool)
        return self._terminal

    def rank_members(
        self, prompt: list[int], first_lp: Any, names: list[str], limit: int = 256
    ) -> list[tuple[float, str, list[int]]]:
        """Every name scored by the model as a whole (the name followed by a non-word token), best first:
        one tree-shaped forward pass over the names' tokens after `prompt` (which ends with the dot: the
        typed part of the name is backed up over, as training cut its examples at identifier starts).
        Returns (log-probability, name, its tokens)."""
        torch = self.torch
        seqs = {n: self._name_ids(n) for n in names}
        if len(seqs) > limit:  # huge namespaces: keep the names whose first token the model likes best
            keep = sorted(seqs, key=lambda n: -float(first_lp[seqs[n][0]]))[:limit]
            seqs = {n: seqs[n] for n in keep}
        tokens: list[int] = []
        parents: list[int] = []
        node_of: dict[tuple[int, ...], int] = {}
        for ids in seqs.values():
            for j in range(len(ids)):
                key = tuple(ids[: j + 1])
                if key not in node_of:
                    node_of[key] = len(tokens)
                    tokens.append(ids[j])
                    parents.append(node_of[key[:-1]] if j else -1)
        lp = self.fast.tree_logprobs(len(prompt), tokens, parents)
        end_lp = torch.logsumexp(lp.masked_fill(~self._terminal_mask(), float("-inf")), dim=-1)
        scored = []
        for name, ids in seqs.items():
            score = float(first_lp[ids[0]])
            for j in range(1, len(ids)):
                score += float(lp[node_of[tuple(ids[:j])], ids[j]])
            scored.append((score + float(end_lp[node_of[tuple(ids)]]), name, ids))
        scored.sort(key=lambda x: -x[0])
        return scored

    def _offer(self, result: Completion, validator: Validator | None, cand: str, score: float) -> None:
        """Validate `cand` and add it to the shown candidates, or record why it was rejected."""
        if not cand.strip():
            return
        result.raw.append(cand)
        if validator is None:
            result.candidates.append(Candidate(cand, score))
            return
        verdict = validator.check(cand)
        if verdict.ok:
            result.candidates.append(Candidate(verdict.text, score, repaired=verdict.text != cand))
        else:
            result.rejected.append((cand, verdict.problems))

    def _complete_member(
        self,
        result: Completion,
        validator: Validator | None,
        text: str,
        cursor: int,
        ctx: list[str],
        members: tuple[str, list[str]],
        module: str,
        line_prefix: str,
        k: int,
        multiline: bool,
    ) -> None:
        """After `receiver.` of an internal module or class: the receiver's real members ranked by the
        model as whole names, then the rest of the line decoded after each of the best names."""
        typed, names = members
        listed = ctx if self.member_list else []
        prompt = self.prompt_ids(text, cursor, listed, prefix_end=cursor - len(typed))
        result.prompt_tokens = len(prompt)
        first_lp = self.fast.forward(prompt, 0)
        if self.should_stop():
            return
        ranked = self.rank_members(prompt, first_lp, names, self.rank_limit)
        if self.prior is not None:
            prior = NamePrior(self.index, module, text, cursor)
            ranked = sorted(
                ((prior.score(name, sc, self.prior), name, ids) for sc, name, ids in ranked),
                key=lambda x: -x[0],
            )
        terminal = self._terminal_mask()
        for score, name, ids in ranked[: k + 2]:
            if len(result.candidates) >= k or self.should_stop():
                break
            lp = self.fast.forward(ids, len(prompt))
            first = int(lp.masked_fill(~terminal, float("-inf")).argmax())
            rest = ""
            if first not in self.stop_ids:
                rest, _ = self._continue(
                    first, float(lp[first]), True, line_prefix + name[len(typed) :], multiline
                )
            self._offer(result, validator, name[len(typed) :] + rest, score)

    def complete(
        self,
        text: str,
        cursor: int,
        module: str = "",
        k: int = 1,
        retrieval: bool = True,
        validate: bool = True,
        multiline: bool = False,
    ) -> Completion:
        """Up to `k` suggestions for the cursor at offset `cursor` of `text` (a file of `module`)."""
        t0 = time.perf_counter()
        ctx = context_lines(self.index, module, text, cursor) if retrieval and self.index is not None else []
        line_prefix = text[text.rfind("\n", 0, cursor) + 1 : cursor]
        validator = (
            Validator(self.index, module, text, cursor) if validate and self.index is not None else None
        )
        result = Completion([], context=ctx)
        members = self.member_names(text, cursor, module) if validator is not None else None
        n_try = k + (1 if validator is not None else 0)
        with self.torch.inference_mode():
            if members is not None and self.fast is not None and self.rank_names:
                self._complete_member(
                    result, validator, text, cursor, ctx, members, module, line_prefix, k, multiline
                )
            else:
                ident0, allowed = (members[0], members[1]) if members else (None, None)
                m = None if members else _TYPED.search(line_prefix)
                typed = m.group(0) if m else ""  # a word being typed is written again from its start
                ids = self.prompt_ids(text, cursor, ctx, prefix_end=cursor - len(typed))
                result.prompt_tokens = len(ids)
                logprobs, cache = self._step(ids, None)
                tried: set[int] = set(self.stop_ids)
                for rank in range(n_try):
                    if len(result.candidates) >= k or self.should_stop():
                        break
                    if rank > 0:  # the cache was extended by the previous branch: prefill again
                        logprobs, cache = self._step(ids, None)
                    if typed:
                        first, ident = self._pick_healed(logprobs, typed, tried), None
                    else:
                        first, ident = self._pick(logprobs, ident0, allowed, tried)
                    tried.add(first)
                    cand, score = self._continue(
                        first,
                        float(logprobs[first]),
                        cache,
                        line_prefix[: len(line_prefix) - len(typed)],
                        multiline,
                        ident,
                        allowed,
                        need=typed,
                    )
                    if cand.startswith(typed):
                        self._offer(result, validator, cand[len(typed) :], score)
        result.latency_ms = (time.perf_counter() - t0) * 1000
        return result


__all__ = ["EOS", "Candidate", "Completer", "Completion", "offset_of"]
