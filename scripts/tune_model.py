#!/usr/bin/env python3
"""Choose the completion engine's settings on files the benchmark never scores.

    python scripts/tune_model.py --repo /tmp/jinja --split train --model base
    python scripts/tune_model.py --repo /tmp/jinja-dev --split dev --model /tmp/jinja-dev/.ect/model

`--split train` scores the base model on the repository's training files (a fine-tuned model has seen
them, so use it with `--model base` only). `--split dev` scores files held out at `--dev-percent` but not
at `--scored-percent` (the benchmark's, 10 by default): train the model on a checkout whose `[tool.ect.model]
held_out_percent` is `--dev-percent`, then the benchmark's held-out files stay unseen by the tuning.

Prints (1) member-call identifier accuracy for constrained greedy decoding, whole-name ranking, and
whole-name ranking with the prior over a grid of weights; (2) for each `min_token_prob`, keystroke
savings at word starts (a completion popup) and at every keystroke (ghost text), call exact match /
identifier accuracy and next-line edit similarity, and each cut-off's differences from the configured one,
paired on the same lines and tasks; (3) with a fine-tuned model and `--fine-tune-weights`,
the same figures for its weights blended with the base's in other proportions (`fine_tune_weight`:
base + w x (fine-tuned - base); the saved model's own weight is taken into account).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--split", choices=["train", "dev"], default="train")
    ap.add_argument("--dev-percent", type=int, default=30)
    ap.add_argument("--scored-percent", type=int, default=10, help="the benchmark's held-out percentage")
    ap.add_argument("--model", default="base", help="'base' or a fine-tuned model directory")
    ap.add_argument("--tasks", type=int, default=400, help="tasks per kind")
    ap.add_argument("--replay-lines", type=int, default=40)
    ap.add_argument("--taus", default="0.35,0.5,0.6,0.7,0.8,0.9")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fine-tune-weights", default="", help="e.g. 0,0.5,0.7,1 (a fine-tuned --model only)")
    args = ap.parse_args()

    import torch
    from ect.models.complete import Completer
    from ect.models.corpus import Corpus, build_corpus
    from ect.models.evaluate import identifiers, keystroke_savings, make_tasks, model_suggester, run_row
    from ect.models.index import SymbolIndex
    from ect.models.modeling import load_base, load_trained, resolve_base
    from ect.models.prior import NamePrior
    from ect.models.retrieval import context_lines
    from ect.models.settings import model_settings

    from ect.config import load_config

    torch.set_num_threads(args.threads)
    root = args.repo.resolve()
    cfg = load_config(root)
    settings = model_settings(cfg)
    index = SymbolIndex.build(root, cfg.state_path, settings.internal)
    full = build_corpus(root, settings.held_out_percent, settings.exclude)
    if args.split == "train":
        files = full.train
    else:
        scored = {f.path for f in build_corpus(root, args.scored_percent, settings.exclude).held_out}
        files = [
            f for f in build_corpus(root, args.dev_percent, settings.exclude).held_out if f.path not in scored
        ]
    if not files:
        print("tune_model: no files in that split", file=sys.stderr)
        return 2
    corpus = Corpus(held_out=files)
    tasks = make_tasks(corpus, index, args.tasks, seed=1)
    meta: dict[str, Any] = {}
    if args.model == "base":
        model, tok = load_base(resolve_base(settings.base, root))
    else:
        model, tok, meta = load_trained(Path(args.model))
    print(f"{args.split} split: {len(files)} files, {len(tasks)} tasks, model {args.model}")

    # (1) member ranking
    fine_tuned = args.model != "base"
    completer = Completer(model, tok, index, settings, prior=None, member_list=not fine_tuned)
    rows: list[tuple[str, dict[str, tuple[float, int, int]]]] = []
    greedy_ok = 0
    with torch.inference_mode():
        for t in tasks:
            members = (
                completer.member_names(t.text, t.cursor, t.file.module) if t.kind == "api_call" else None
            )
            if members is None or t.callee not in members[1]:
                continue
            typed, names = members
            ctx = context_lines(index, t.file.module, t.text, t.cursor)
            prompt = completer.prompt_ids(t.text, t.cursor, ctx, prefix_end=t.cursor - len(typed))
            first = completer.fast.forward(prompt, 0)
            ranked = completer.rank_members(prompt, first, names, limit=10**6)
            prior = NamePrior(index, t.file.module, t.text, t.cursor)
            rows.append(
                (
                    t.callee,
                    {
                        n: (s, prior.in_file.get(n, 0), index.references_elsewhere(n, t.file.module))
                        for s, n, _ in ranked
                    },
                )
            )
            completer.rank_names = False
            shown = completer.complete(t.text, t.cursor, t.file.module).candidates
            completer.rank_names = True
            greedy_ok += bool(shown) and identifiers(shown[0].text)[:1] == [t.callee]

    def accuracy(weight: float, elsewhere: float) -> float:
        def score(item: tuple[str, tuple[float, int, int]]) -> float:
            s, here, other = item[1]
            return s + weight * math.log1p(here + elsewhere * max(0, other))

        hits = sum(max(names.items(), key=score)[0] == target for target, names in rows)
        return hits / len(rows) if rows else float("nan")

    n = len(rows)
    print(
        f"\nmember calls: {n}; constrained greedy {greedy_ok / max(n, 1):.3f}; "
        f"whole names {accuracy(0, 0):.3f}"
    )
    grid_w = (0.0, 0.03, 0.1, 0.3, 1.0)
    print("prior weight \\ elsewhere weight: " + " ".join(f"{w:>6}" for w in grid_w))
    for weight in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0):
        print(f"{weight:>32} " + " ".join(f"{accuracy(weight, w):>6.3f}" for w in grid_w))

    def figures(label: Any) -> dict[str, Any]:
        engine = Completer(model, tok, index, settings, member_list=not fine_tuned)
        suggest = model_suggester(engine, retrieval=True)
        row: dict[str, Any] = run_row(str(label), suggest, tasks, index)
        row["word_lines"], row["ghost_lines"] = [], []
        row.update(keystroke_savings(suggest, files, args.replay_lines, seed=1, per_line=row["word_lines"]))
        ghost = keystroke_savings(
            suggest, files, args.replay_lines, seed=1, every_keystroke=True, per_line=row["ghost_lines"]
        )
        c, line = row.get("api_call", {}), row.get("next_line", {})
        print(
            f"{label:>16} {row['keystroke_savings']:>10.3f} {ghost['keystroke_savings']:>10.3f} "
            f"{c.get('exact', 0):>8.3f} "
            f"{c.get('ident_acc', 0):>8.3f} {line.get('edit_sim', 0):>8.3f}",
            flush=True,
        )
        return row

    # (2) the confidence cut-off
    head = f"{'word start':>10} {'ghost text':>10} {'call EM':>8} {'call id':>8} {'line ES':>8}"
    print(f"\n{'min_token_prob':>16} {head}")
    configured = settings.min_token_prob
    by_tau: dict[float, dict[str, Any]] = {}
    for tau in (float(x) for x in args.taus.split(",")):
        settings.min_token_prob = tau
        by_tau[tau] = figures(tau)
    settings.min_token_prob = configured
    if configured in by_tau and len(by_tau) > 1:  # paired on the same lines and tasks
        print(f"\n{'minus ' + str(configured):>16} (95% intervals)")
        for tau, row in by_tau.items():
            if tau != configured:
                print(f"{tau:>16} " + paired_line(row, by_tau[configured], tasks))

    # (3) how much of the fine-tuning update to keep
    if args.fine_tune_weights and meta:
        import copy

        base_state = load_base(resolve_base(settings.base, root))[0].state_dict()
        saved = copy.deepcopy(model.state_dict())
        kept = float(meta.get("fine_tune_weight") or 1.0)
        print(f"\n{'fine_tune_weight':>16} {head}   (min_token_prob {settings.min_token_prob})")
        for w in (float(x) for x in args.fine_tune_weights.split(",")):
            scale = w / kept
            model.load_state_dict({k: base_state[k] + scale * (v - base_state[k]) for k, v in saved.items()})
            figures(w)
    return 0


def _ratio_diff(a: list[tuple[int, int]], b: list[tuple[int, int]], n_boot: int = 2000) -> str:
    """Savings of a minus b on the same lines, with a 95% interval by a paired bootstrap over lines."""
    import random

    rng = random.Random(0)

    def diff(idx: list[int]) -> float:
        typed = sum(a[i][1] for i in idx) or 1
        return (sum(a[i][0] for i in idx) - sum(b[i][0] for i in idx)) / typed

    boots = sorted(diff([rng.randrange(len(a)) for _ in a]) for _ in range(n_boot))
    point = diff(list(range(len(a))))
    lo, hi = boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot)]
    return f"{100 * point:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def paired_line(a: dict[str, Any], b: dict[str, Any], tasks: list[Any]) -> str:
    """Word start, ghost text (points, bootstrap over lines) and call identifier accuracy (points,
    bootstrap over files) of row a minus row b."""
    from ect.models.evaluate import paired_comparison

    groups = [t.file.path for t in tasks if t.kind == "api_call"]
    word = _ratio_diff(a["word_lines"], b["word_lines"])
    out = f"word {word}  ghost {_ratio_diff(a['ghost_lines'], b['ghost_lines'])}"
    if groups:
        c = paired_comparison(a["call_ident_per_task"], b["call_ident_per_task"], groups)
        out += f"  call id {100 * c['diff']:+.1f} [{100 * c['lo']:+.1f}, {100 * c['hi']:+.1f}]"
    return out


if __name__ == "__main__":
    sys.exit(main())
