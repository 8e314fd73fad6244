"""Evaluation on held-out files: next-line and internal-API call completion, hallucinated internal
symbols before/after validation, simulated keystroke savings and latency, for several systems."""

from __future__ import annotations

import difflib
import random
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ect.models.corpus import Corpus, SourceFile, build_corpus, internal_calls
from ect.models.index import SymbolIndex
from ect.models.retrieval import RECEIVER, Resolver, _rank
from ect.models.settings import ModelSettings
from ect.models.validate import Validator

_IDENT = re.compile(r"[A-Za-z_]\w*")
_PARTIAL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)$")


@dataclass
class Task:
    kind: str  # 'next_line' | 'api_call'
    file: SourceFile
    text: str  # the file with the target removed
    cursor: int
    target: str
    callee: str = ""
    seen: bool = False  # a call task whose callee is defined in a training file (what a fine-tune can learn)


def _capped(tasks: list[Task], n: int, per_file: int) -> list[Task]:
    """The first `n` of `tasks` (already shuffled) with at most `per_file` from any one file (0: no cap)."""
    out: list[Task] = []
    counts: Counter[str] = Counter()
    for t in tasks:
        if len(out) >= n:
            break
        if per_file and counts[t.file.path] >= per_file:
            continue
        counts[t.file.path] += 1
        out.append(t)
    return out


def make_tasks(
    corpus: Corpus,
    index: SymbolIndex,
    n: int,
    seed: int,
    n_calls: int | None = None,
    max_per_file: int = 0,
) -> list[Task]:
    """`n` next-line and `n_calls` (default `n`) internal-API call tasks from the held-out files, drawn
    at random with at most `max_per_file` of each kind from one file (0: no cap), so that a few long
    files do not decide the result."""
    from ect.models.retrieval import Resolver

    rng = random.Random(seed)
    files = corpus.held_out
    trained = {f.path for f in corpus.train}
    lines: list[Task] = []
    calls: list[Task] = []
    for f in files:
        offs = [0, *(m.end() for m in re.finditer("\n", f.text))]
        for ls in offs:
            le = f.text.find("\n", ls)
            le = len(f.text) if le < 0 else le
            line = f.text[ls:le]
            if not line.strip():
                continue
            cur = ls + len(line) - len(line.lstrip())
            lines.append(Task("next_line", f, f.text[:cur] + f.text[le:], cur, f.text[cur:le].rstrip()))
        resolver = Resolver(index, f.module, f.text)
        for start, end, dotted in internal_calls(index, f):
            target = f.text[start:end].rstrip()
            sym = resolver.resolve_callee(dotted, start)
            seen = sym is not None and sym.path in trained
            calls.append(
                Task("api_call", f, f.text[:start] + f.text[end:], start, target, dotted.split(".")[-1], seen)
            )
    rng.shuffle(lines)
    rng.shuffle(calls)
    return _capped(lines, n, max_per_file) + _capped(calls, n if n_calls is None else n_calls, max_per_file)


def paired_comparison(
    a: list[float], b: list[float], groups: list[str], n_boot: int = 4000, seed: int = 0
) -> dict[str, float]:
    """System a minus system b on the same tasks (1/0 per task): the mean difference, a 95% interval by
    a paired bootstrap that resamples whole files (`groups`; tasks of one file are not independent),
    and McNemar's exact two-sided p-value over the discordant tasks."""
    import math

    if not a or len(a) != len(b) or len(a) != len(groups):
        raise ValueError("paired_comparison needs two equally long, non-empty score lists")
    by_file: dict[str, list[float]] = {}
    for x, y, g in zip(a, b, groups, strict=True):
        by_file.setdefault(g, []).append(x - y)
    clusters = [(sum(v), len(v)) for v in by_file.values()]
    rng = random.Random(seed)
    diffs = []
    for _ in range(n_boot):
        tot = cnt = 0.0
        for _ in range(len(clusters)):
            s_, c_ = clusters[rng.randrange(len(clusters))]
            tot += s_
            cnt += c_
        diffs.append(tot / cnt)
    diffs.sort()
    wins = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    losses = sum(1 for x, y in zip(a, b, strict=True) if x < y)
    k, n = min(wins, losses), wins + losses
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {
        "a": round(statistics.fmean(a), 4),
        "b": round(statistics.fmean(b), 4),
        "diff": round(statistics.fmean(a) - statistics.fmean(b), 4),
        "lo": round(diffs[int(0.025 * n_boot)], 4),
        "hi": round(diffs[min(n_boot - 1, int(0.975 * n_boot))], 4),
        "wins": wins,
        "losses": losses,
        "p_mcnemar": round(p, 4),
        "tasks": len(a),
        "files": len(clusters),
    }


def static_suggestion(index: SymbolIndex, module: str, text: str, cursor: int) -> str:
    """The index alone: the most used matching member or imported name, with its required arguments."""
    res = Resolver(index, module, text)
    before = text[text.rfind("\n", 0, cursor) + 1 : cursor]
    nearby = set(_IDENT.findall(text[max(0, cursor - 1500) : cursor]))
    m = RECEIVER.search(before)
    if m:
        recv = res.resolve_chain(m.group(1), cursor)
        if recv is None or recv.kind not in ("module", "class"):
            return ""
        partial = m.group(2)
        pool = [s for s in res.members(recv.qualname).values() if s.name.startswith(partial)]
    else:
        pm = _PARTIAL.search(before)
        partial = pm.group(1) if pm else ""
        pool = []
        for local in res.imports:
            sym = res.resolve_name(local, cursor)
            if sym is not None and sym.kind in ("function", "class") and local.startswith(partial):
                pool.append(sym)
    ranked = _rank(pool, partial, nearby)
    if not ranked:
        return ""
    top = ranked[0]
    out = top.name[len(partial) :]
    if top.kind in ("function", "method", "class"):
        params = index.call_params(top.qualname) or []
        req = [p.name for p in params if p.kind in ("positional", "positional_only") and not p.has_default]
        req += [f"{p.name}={p.name}" for p in params if p.kind == "keyword_only" and not p.has_default]
        out += f"({', '.join(req)})"
    return out


def identifiers(text: str) -> list[str]:
    return _IDENT.findall(text)


def ident_f1(pred: str, target: str) -> float:
    p, t = Counter(identifiers(pred)), Counter(identifiers(target))
    if not p and not t:
        return 1.0
    common = sum((p & t).values())
    if common == 0:
        return 0.0
    prec, rec = common / sum(p.values()), common / sum(t.values())
    return 2 * prec * rec / (prec + rec)


def edit_similarity(pred: str, target: str) -> float:
    return difflib.SequenceMatcher(None, pred.strip(), target.strip(), autojunk=False).ratio()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


ROWS = ("static index baseline", "base model", "base + retrieval", "fine-tuned", "fine-tuned + retrieval")

Suggest = Callable[[str, int, str], tuple[list[str], list[str], float]]  # -> (shown, raw, latency_ms)


def run_row(name: str, suggest: Suggest, tasks: list[Task], index: SymbolIndex) -> dict[str, Any]:
    """Score one system on the tasks."""
    per: dict[str, dict[str, list[float]]] = {"next_line": {}, "api_call": {}}
    raw_n = raw_bad = shown_n = shown_bad = 0
    latencies: list[float] = []
    per_task: list[float] = []  # call identifier right (1) or not (0), in task order: for paired tests
    for t in tasks:
        shown, raw, ms = suggest(t.text, t.cursor, t.file.module)
        latencies.append(ms)
        checker = Validator(index, t.file.module, t.text, t.cursor)
        for r in raw:
            raw_n += 1
            raw_bad += bool(checker.problems(r))
        for s in shown:
            shown_n += 1
            shown_bad += bool(checker.problems(s))
        pred = shown[0] if shown else ""
        d = per[t.kind]
        d.setdefault("exact", []).append(float(pred.strip() == t.target.strip()))
        d.setdefault("edit_sim", []).append(edit_similarity(pred, t.target))
        d.setdefault("ident_f1", []).append(ident_f1(pred, t.target))
        if t.kind == "api_call":
            first = identifiers(pred)[:1]
            ok = bool(first) and first[0] == t.callee
            d.setdefault("ident_acc", []).append(float(ok))
            per_task.append(float(ok))
            d.setdefault("api_acc", []).append(float(ok and pred.lstrip().startswith(t.callee + "(")))
    out: dict[str, Any] = {"name": name}
    for kind, metrics in per.items():
        out[kind] = {k: round(statistics.fmean(v), 4) for k, v in metrics.items() if v}
        out[kind]["n"] = len(next(iter(metrics.values()), []))
    out["call_ident_per_task"] = per_task
    out["halluc_before"] = round(raw_bad / raw_n, 4) if raw_n else 0.0
    out["halluc_after"] = round(shown_bad / shown_n, 4) if shown_n else 0.0
    out["suggestions_shown"] = shown_n
    out["latency_p50_ms"] = round(_pct(latencies, 0.5), 1)
    out["latency_p95_ms"] = round(_pct(latencies, 0.95), 1)
    return out


def keystroke_savings(
    suggest: Suggest,
    files: list[SourceFile],
    max_lines: int,
    seed: int,
    every_keystroke: bool = False,
    per_line: list[tuple[int, int]] | None = None,
) -> dict[str, float]:
    """Replay lines of held-out files and accept a suggestion (one keystroke) when it matches what
    follows. Savings = keystrokes saved / characters typed; `per_line` gets (saved, typed) of each line.

    By default a suggestion is asked for at each word start (a completion popup). With `every_keystroke`
    the replay is an editor's ghost text: whenever none is shown a suggestion is asked for, and a shown one
    stays while the typed characters match it."""
    rng = random.Random(seed)
    candidates: list[tuple[SourceFile, int, int]] = []
    for f in files:
        pos = 0
        for line in f.text.split("\n"):
            if line.strip() and not line.strip().startswith("#"):
                ind = len(line) - len(line.lstrip())
                candidates.append((f, pos + ind, pos + len(line.rstrip())))
            pos += len(line) + 1
    rng.shuffle(candidates)
    typed = saved = queries = accepted = 0
    for f, start, end in candidates[:max_lines]:
        target = f.text[start:end]
        saved_before = saved
        rest = f.text[end:]
        i = 0
        live = ""  # ghost text still shown (every_keystroke)
        while i < len(target):
            at_boundary = i == 0 or not (target[i - 1].isalnum() or target[i - 1] == "_")
            s = live
            if not s and (at_boundary or every_keystroke):
                text = f.text[:start] + target[:i] + rest
                shown, _, _ = suggest(text, start + i, f.module)
                queries += 1
                s = shown[0] if shown else ""
            if s and target[i:].startswith(s) and len(s) > 1:
                saved += len(s) - 1
                accepted += 1
                i += len(s)
                live = ""
                continue
            live = s[1:] if every_keystroke and s[:1] == target[i] else ""
            i += 1
        typed += len(target)
        if per_line is not None:
            per_line.append((saved - saved_before, len(target)))
    return {
        "keystroke_savings": round(saved / typed, 4) if typed else 0.0,
        "chars": typed,
        "queries": queries,
        "accepted": accepted,
    }


def model_suggester(completer: Any, retrieval: bool) -> Suggest:
    def suggest(text: str, cursor: int, module: str) -> tuple[list[str], list[str], float]:
        res = completer.complete(text, cursor, module, k=1, retrieval=retrieval, validate=True)
        return [c.text for c in res.candidates], res.raw, res.latency_ms

    return suggest


def static_suggester(index: SymbolIndex) -> Suggest:
    import time

    def suggest(text: str, cursor: int, module: str) -> tuple[list[str], list[str], float]:
        t0 = time.perf_counter()
        s = static_suggestion(index, module, text, cursor)
        return ([s] if s else []), ([s] if s else []), (time.perf_counter() - t0) * 1000

    return suggest


def evaluate_repo(
    root: Path,
    state_dir: Path,
    settings: ModelSettings,
    n_tasks: int = 100,
    replay_lines: int = 120,
    seed: int = 0,
    threads: int = 2,
    echo: Callable[[str], None] = print,
    model_dir: Path | None = None,
    n_calls: int | None = None,
    max_per_file: int = 0,
    rows_wanted: tuple[str, ...] = ROWS,
) -> dict[str, Any]:
    """All rows (or `rows_wanted`) side by side on the held-out split of `root`, and paired comparisons
    of each fine-tuned row with the base row of the same kind on the same call tasks."""
    import time

    import torch
    from ect.models.complete import Completer
    from ect.models.modeling import load_base, load_trained, resolve_base

    from ect.errors import EctError

    torch.set_num_threads(threads)
    index = SymbolIndex.build(root, state_dir, settings.internal)
    corpus = build_corpus(root, settings.held_out_percent, settings.exclude, settings.held_out_fold)
    if not corpus.held_out:
        raise EctError("no held-out files to evaluate on")
    tasks = make_tasks(corpus, index, n_tasks, seed, n_calls=n_calls, max_per_file=max_per_file)
    mdir = model_dir or state_dir / "model"
    rows: list[tuple[str, Suggest]] = [("static index baseline", static_suggester(index))]
    base_model, base_tok = load_base(resolve_base(settings.base, root))
    base = Completer(base_model, base_tok, index, settings)
    rows.append(("base model", model_suggester(base, retrieval=False)))
    rows.append(("base + retrieval", model_suggester(base, retrieval=True)))
    meta: dict[str, Any] = {}
    if (mdir / "ect_model.json").is_file():
        ft_model, ft_tok, meta = load_trained(mdir)
        ft = Completer(ft_model, ft_tok, index, settings, member_list=False)
        rows.append(("fine-tuned", model_suggester(ft, retrieval=False)))
        rows.append(("fine-tuned + retrieval", model_suggester(ft, retrieval=True)))
    else:
        echo("no fine-tuned model in .ect/model: run 'ect model train' for the fine-tuned rows")
    rows = [r for r in rows if r[0] in rows_wanted]
    for _, fn in rows[1:2] or rows[:1]:  # warm up (first calls allocate)
        for t in tasks[:3]:
            fn(t.text, t.cursor, t.file.module)
    results = []
    for name, fn in rows:
        t0 = time.time()
        row = run_row(name, fn, tasks, index)
        if replay_lines > 0:
            row.update(keystroke_savings(fn, corpus.held_out, replay_lines, seed))
            typing = keystroke_savings(fn, corpus.held_out, replay_lines, seed, every_keystroke=True)
            row.update({f"{k}_typing": v for k, v in typing.items() if k != "chars"})
        row["seconds"] = round(time.time() - t0, 1)
        c, n = row.get("api_call", {}), row.get("next_line", {})
        echo(
            f"  {name}: call id-acc {c.get('ident_acc', 0):.3f} EM {c.get('exact', 0):.3f}, line ES "
            f"{n.get('edit_sim', 0):.3f}, halluc {row['halluc_before']:.3f}/{row['halluc_after']:.3f}, keys "
            f"{row.get('keystroke_savings', 0):.3f} (typing {row.get('keystroke_savings_typing', 0):.3f}), "
            f"p50 {row['latency_p50_ms']} "
            f"p95 {row['latency_p95_ms']} ms ({row['seconds']:.0f}s)"
        )
        results.append(row)
    call_files = [t.file.path for t in tasks if t.kind == "api_call"]
    seen = [t.seen for t in tasks if t.kind == "api_call"]
    by_name = {r["name"]: r for r in results}
    paired = _paired(by_name, call_files, seen)
    return {
        "paired": paired,
        "call_task_files": len(set(call_files)),
        "call_task_paths": call_files,  # per call task, in the order of each row's call_ident_per_task
        "call_task_seen": seen,  # per call task: its callee is defined in a training file
        "repo": str(root),
        "held_out_files": len(corpus.held_out),
        "train_files": len(corpus.train),
        "lines": corpus.lines,
        "tasks": {
            "next_line": sum(t.kind == "next_line" for t in tasks),
            "api_call": sum(t.kind == "api_call" for t in tasks),
        },
        "model": {
            k: meta.get(k)
            for k in (
                "base",
                "lora",
                "steps",
                "tokens",
                "seconds",
                "parameters",
                "held_out_loss_before",
                "held_out_loss_after",
                "held_out_loss_checkpoint",
                "best_step",
                "fine_tune_weight",
            )
        }
        if meta
        else {},
        "rows": results,
    }


def _weighted(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-kind metrics of several folds pooled: each mean weighted by its fold's task count `n`."""
    total = sum(int(d.get("n", 0)) for d in dicts)
    out: dict[str, Any] = {"n": total}
    for key in {k for d in dicts for k in d if k != "n"}:
        parts = [(float(d[key]), int(d.get("n", 0))) for d in dicts if key in d]
        weight = sum(n for _, n in parts)
        out[key] = round(sum(v * n for v, n in parts) / weight, 4) if weight else 0.0
    return out


def _paired(
    by_name: dict[str, dict[str, Any]], paths: list[str], seen: list[bool] | None
) -> list[dict[str, Any]]:
    """Each fine-tuned row against its base on the same call tasks: all of them, then (with `seen`)
    split by where the callee is defined: a training file (the fine-tune saw its definition and uses)
    or a held-out one (only retrieval, the prior and the index know it)."""
    paired: list[dict[str, Any]] = []
    for ft_name, base_name in (("fine-tuned", "base model"), ("fine-tuned + retrieval", "base + retrieval")):
        if ft_name not in by_name or base_name not in by_name or not paths:
            continue
        a, b = by_name[ft_name]["call_ident_per_task"], by_name[base_name]["call_ident_per_task"]
        subsets: list[tuple[str, bool | None]] = [("", None)]
        if seen is not None:
            subsets += [("callee in training files", True), ("callee held out", False)]
        for subset, keep in subsets:
            idx = [i for i in range(len(a)) if keep is None or (seen is not None and seen[i] == keep)]
            if not idx:
                continue
            cmp = paired_comparison([a[i] for i in idx], [b[i] for i in idx], [paths[i] for i in idx])
            entry = {**cmp, "a_acc": cmp["a"], "b_acc": cmp["b"], "a": ft_name, "b": base_name}
            paired.append({**entry, "subset": subset} if subset else entry)
    return paired


def pool_folds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """`evaluate_repo` results of k held-out folds as one: rows pooled task by task (per-kind means
    weighted by task counts, keystroke savings averaged over folds, hallucinations and latency the worst
    fold's), and the paired comparisons recomputed over the call tasks of all folds, so their interval
    resamples the held-out files of every fold."""
    if not results:
        raise ValueError("pool_folds needs at least one fold result")
    names = [r["name"] for r in results[0]["rows"] if all(_has_row(res, r["name"]) for res in results)]
    rows: list[dict[str, Any]] = []
    for name in names:
        parts = [next(r for r in res["rows"] if r["name"] == name) for res in results]
        row: dict[str, Any] = {"name": name}
        for kind in ("next_line", "api_call"):
            row[kind] = _weighted([p.get(kind, {}) for p in parts])
        row["call_ident_per_task"] = [x for p in parts for x in p["call_ident_per_task"]]
        for key in ("halluc_before", "halluc_after", "latency_p50_ms", "latency_p95_ms"):
            row[key] = max(float(p[key]) for p in parts)
        row["suggestions_shown"] = sum(int(p.get("suggestions_shown", 0)) for p in parts)
        for key in {k for p in parts for k in p if k.startswith("keystroke_savings")}:
            vals = [float(p[key]) for p in parts if key in p]
            row[key] = round(statistics.fmean(vals), 4)
        row["seconds"] = round(sum(float(p.get("seconds", 0)) for p in parts), 1)
        rows.append(row)
    paths = [p for res in results for p in res["call_task_paths"]]
    by_name = {r["name"]: r for r in rows}
    seen = [x for res in results for x in res.get("call_task_seen", [])]
    paired = _paired(by_name, paths, seen if len(seen) == len(paths) else None)
    return {
        "paired": paired,
        "folds": len(results),
        "call_task_files": len(set(paths)),
        "call_task_paths": paths,
        "repo": results[0]["repo"],
        "held_out_files": sum(int(r["held_out_files"]) for r in results),
        "train_files": round(statistics.fmean(int(r["train_files"]) for r in results)),
        "lines": results[0]["lines"],
        "tasks": {k: sum(int(r["tasks"][k]) for r in results) for k in ("next_line", "api_call")},
        "model": {},
        "per_fold": [{k: v for k, v in r.items() if k != "call_task_paths"} for r in results],
        "rows": rows,
    }


def _has_row(result: dict[str, Any], name: str) -> bool:
    return any(r["name"] == name for r in result["rows"])


def format_paired(result: dict[str, Any]) -> str:
    """One line per paired comparison: difference in call identifier accuracy with its 95% interval."""
    lines = []
    for p in result.get("paired", []):
        lines.append(
            f"paired, call identifier accuracy, {p['a']} minus {p['b']}"
            + (f" ({p['subset']})" if p.get("subset") else "")
            + f": {100 * p['diff']:+.1f} points "
            f"[95% interval {100 * p['lo']:+.1f}, {100 * p['hi']:+.1f}] ({100 * p['a_acc']:.1f}% vs "
            f"{100 * p['b_acc']:.1f}%; {p['wins']} tasks won, {p['losses']} lost, "
            f"McNemar p={p['p_mcnemar']:.3g}; "
            f"{p['tasks']} tasks from {p['files']} files, bootstrap over files)"
        )
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    head = (
        f"{'system':24} {'call id-acc':>11} {'call EM':>8} {'call ES':>8} {'line EM':>8} {'line ES':>8} "
        f"{'id-F1':>6} {'halluc b/a':>11} {'keys saved':>10} {'typing':>7} {'p50 ms':>7} {'p95 ms':>7}"
    )
    lines = [
        f"repo {result['repo']}: {result['train_files']} train / {result['held_out_files']} held-out files, "
        f"{result['lines']} lines; tasks: {result['tasks']['next_line']} next-line, "
        f"{result['tasks']['api_call']} api-call",
        head,
        "-" * len(head),
    ]
    nan = float("nan")
    for r in result["rows"]:
        c, n = r.get("api_call", {}), r.get("next_line", {})
        lines.append(
            f"{r['name']:24} {c.get('ident_acc', float('nan')):>11.3f} {c.get('exact', float('nan')):>8.3f} "
            f"{c.get('edit_sim', nan):>8.3f} {n.get('exact', nan):>8.3f} {n.get('edit_sim', nan):>8.3f} "
            f"{(c.get('ident_f1', 0) + n.get('ident_f1', 0)) / 2:>6.3f} "
            f"{r['halluc_before']:>5.3f}/{r['halluc_after']:<5.3f} {r.get('keystroke_savings', nan):>10.3f} "
            f"{r.get('keystroke_savings_typing', nan):>7.3f} "
            f"{r['latency_p50_ms']:>7.1f} {r['latency_p95_ms']:>7.1f}"
        )
    return "\n".join(lines)
