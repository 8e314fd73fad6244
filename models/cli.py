"""`ect model ...`: train, complete, eval and index commands. Heavy imports happen inside commands."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from ect.errors import EctError


def _context() -> tuple[Path, Any, Any]:
    from ect.models.settings import model_settings

    from ect.config import load_config
    from ect.repo import find_root

    root = find_root()
    cfg = load_config(root)
    return root, cfg, model_settings(cfg)


@click.group("model")
def model() -> None:
    """Train, evaluate and query the code model fine-tuned on this repository."""


@model.command("train")
@click.option(
    "--base", "base", default=None, help="Local Hugging Face checkpoint directory (default: shipped base)."
)
@click.option("--lora/--full", "lora", default=None, help="LoRA adapters or full fine-tuning.")
@click.option("--max-minutes", type=float, default=None, help="Time budget (default from config: 15).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--restart", is_flag=True, help="Ignore a saved checkpoint and start over.")
@click.option("--max-steps", type=int, default=0, hidden=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
def train_cmd(
    base: str | None,
    lora: bool | None,
    max_minutes: float | None,
    device: str,
    restart: bool,
    max_steps: int,
    seed: int,
    as_json: bool,
) -> int:
    """Fine-tune on the repository's tracked Python files and save to .ect/model/."""
    from ect.models.train import train_model

    from ect import events

    root, cfg, settings = _context()
    t0 = time.time()
    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    report = train_model(
        root,
        cfg.state_path,
        settings,
        base=base,
        lora=lora,
        max_minutes=max_minutes,
        device=device,
        seed=seed,
        restart=restart,
        max_steps=max_steps,
        echo=echo,
    )
    events.record(
        cfg.state_path,
        "model.trained",
        source="cli",
        repo=root.name,
        duration_ms=(time.time() - t0) * 1000,
        outcome="ok" if report.finished else "partial",
        **{k: v for k, v in asdict(report).items() if k != "out_dir"},
    )
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
    else:
        click.echo(
            f"saved {report.out_dir}: {report.steps} steps, {report.tokens / 1e3:.0f}k tokens "
            f"in {report.seconds:.0f}s; "
            f"held-out loss {report.held_out_loss_before:.3f} -> {report.held_out_loss_after:.3f} "
            f"(best step {report.best_step}, {report.fine_tune_weight:g} of its update kept)"
            f"{'' if report.finished else ' (partial: run again to resume)'}"
        )
    return 0


_LOCATION = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<col>\d+)$")


def load_completer(root: Path, cfg: Any, settings: Any, use_base: bool = False) -> tuple[Any, str]:
    """The fine-tuned model when there is one (else the base), wrapped in a Completer."""
    from ect.models.complete import Completer
    from ect.models.index import SymbolIndex
    from ect.models.modeling import load_base, load_trained, resolve_base
    from ect.models.settings import model_dir

    index = SymbolIndex.build(root, cfg.state_path, settings.internal)
    mdir = model_dir(cfg)
    if not use_base and (mdir / "ect_model.json").is_file():
        m, tok, _ = load_trained(mdir)
        name = "fine-tuned"
    else:
        m, tok = load_base(resolve_base(settings.base, root))
        name = "base"
    return Completer(m, tok, index, settings), name


@model.command("complete")
@click.argument("location")
@click.option(
    "-k", "k", type=click.IntRange(1, 10), default=1, show_default=True, help="Number of suggestions."
)
@click.option("--no-retrieval", is_flag=True, help="Leave the internal signatures out of the prompt.")
@click.option("--base-model", is_flag=True, help="Use the base model even when a fine-tuned one exists.")
@click.option("--multiline", is_flag=True, help="Complete a whole statement, not just the line.")
@click.option("--json", "as_json", is_flag=True)
def complete_cmd(
    location: str, k: int, no_retrieval: bool, base_model: bool, multiline: bool, as_json: bool
) -> int:
    """Suggest a completion at PATH:LINE:COL (1-based, as compilers print them)."""
    from ect.models.complete import offset_of
    from ect.models.index import module_name_for

    from ect import events

    m = _LOCATION.match(location)
    if not m:
        raise EctError(f"expected PATH:LINE:COL, got '{location}'")
    path = Path(m.group("path"))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EctError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EctError(f"{path}: cannot read: {exc}") from None
    try:
        cursor = offset_of(text, int(m.group("line")), int(m.group("col")))
    except ValueError as exc:
        raise EctError(f"{location}: {exc}") from None
    root, cfg, settings = _context()
    completer, name = load_completer(root, cfg, settings, use_base=base_model)
    try:
        module = module_name_for(path.resolve(), root)
    except ValueError:
        module = path.stem
    res = completer.complete(text, cursor, module, k=k, retrieval=not no_retrieval, multiline=multiline)
    for cand in res.candidates:
        events.record(
            cfg.state_path, "completion.shown", source="cli", repo=root.name, chars=len(cand.text), model=name
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": name,
                    "location": location,
                    "candidates": [asdict(c) for c in res.candidates],
                    "rejected": [{"text": t, "problems": p} for t, p in res.rejected],
                    "context": res.context,
                    "latency_ms": round(res.latency_ms, 1),
                    "prompt_tokens": res.prompt_tokens,
                },
                indent=2,
            )
        )
    else:
        if not res.candidates:
            click.echo("(no suggestion)", err=True)
        for cand in res.candidates:
            click.echo(cand.text)
    return 0


@model.command("eval")
@click.option("--json", "as_json", is_flag=True)
@click.option("--tasks", "n_tasks", type=int, default=100, show_default=True, help="Tasks per kind.")
@click.option(
    "--replay-lines", type=int, default=120, show_default=True, help="Lines replayed for keystroke savings."
)
@click.option("--seed", type=int, default=0, show_default=True)
def eval_cmd(as_json: bool, n_tasks: int, replay_lines: int, seed: int) -> int:
    """Evaluate on the held-out files: static baseline, base, fine-tuned, fine-tuned + retrieval."""
    from ect.models.evaluate import evaluate_repo, format_table

    root, cfg, settings = _context()
    result = evaluate_repo(
        root,
        cfg.state_path,
        settings,
        n_tasks=n_tasks,
        replay_lines=replay_lines,
        seed=seed,
        echo=lambda s: click.echo(s, err=True),
    )
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))
    return 0


@model.command("index")
@click.option("--find", "find", default=None, help="Show the symbols with this bare name.")
@click.option("--json", "as_json", is_flag=True)
def index_cmd(find: str | None, as_json: bool) -> int:
    """Build (incrementally) and summarise the internal symbol index."""
    from ect.models.index import SymbolIndex

    root, cfg, settings = _context()
    t0 = time.perf_counter()
    index = SymbolIndex.build(root, cfg.state_path, settings.internal)
    ms = (time.perf_counter() - t0) * 1000
    if find is not None:
        syms = index.find(find)
        if as_json:
            click.echo(json.dumps([asdict(s) for s in syms], indent=2))
        for s in syms if not as_json else []:
            click.echo(f"{s.path}:{s.line}: {s.kind} {s.qualname}  {s.signature}  (uses {s.uses})")
        return 0 if syms else 1
    kinds: dict[str, int] = {}
    for s in index.symbols():
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    summary = {
        "symbols": len(index),
        "modules": len(index.modules()),
        "kinds": kinds,
        "build_ms": round(ms, 1),
    }
    click.echo(
        json.dumps(summary, indent=2)
        if as_json
        else f"{summary['symbols']} symbols in {summary['modules']} modules ({ms:.0f} ms): "
        + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(model())
