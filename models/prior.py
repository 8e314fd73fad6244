"""A cache-model prior for ranking a receiver's member names: how often each name is referenced in the
open file's live text (after the same receiver as at the cursor: `self.name` for `self.|`) and
elsewhere in the repository. Code repeats itself locally, so interpolating these counts with the
language model's score (log-linearly) ranks the right member first more often than either alone.
No torch here."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from ect.models.index import SymbolIndex
from ect.models.retrieval import RECEIVER

_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class PriorWeights:
    """score = model log-prob + weight * log(1 + in_file + elsewhere_weight * elsewhere)."""

    weight: float = 1.0
    elsewhere_weight: float = 0.0  # chosen on development files: repository-wide counts did not help


DEFAULT_WEIGHTS = PriorWeights()


class NamePrior:
    """Reference counts for one completion request."""

    def __init__(self, index: SymbolIndex | None, module: str, text: str, cursor: int) -> None:
        """After `receiver.` (`self.`, `nodes.`, `self.stream.`) only the names written after the same
        receiver count: that ranked the right member first more often than counting every occurrence of
        a word (identifier accuracy +0.6 to +2.9 points on jinja's and boltons' tuning files, never lower)."""
        self.index = index
        self.module = module
        line_start = text.rfind("\n", 0, cursor) + 1
        line_end = text.find("\n", cursor)
        # the line being written is left out: what the user is typing is not evidence
        live = text[:line_start] + (text[line_end:] if line_end >= 0 else "")
        receiver = RECEIVER.search(text, line_start, cursor)
        if receiver:
            member = re.compile(r"(?<![\w.])" + re.escape(receiver.group(1)) + r"\.([A-Za-z_]\w*)")
            self.in_file = Counter(member.findall(live))
        else:
            self.in_file = Counter(_IDENT.findall(live))

    def log_count(self, name: str, weights: PriorWeights) -> float:
        here = self.in_file.get(name, 0)
        if not weights.elsewhere_weight or self.index is None:
            return math.log1p(here)
        elsewhere = max(0, self.index.references_elsewhere(name, self.module))
        return math.log1p(here + weights.elsewhere_weight * elsewhere)

    def score(self, name: str, model_logprob: float, weights: PriorWeights) -> float:
        return model_logprob + weights.weight * self.log_count(name, weights)
