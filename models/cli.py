"""`ect model ...`: train, complete, eval and index commands. Heavy imports happen inside commands."""

from __future__ import annotations

import json
import os
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
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: the GPU when torch sees one, else the CPU.",
)
@click.option("--restart", is_flag=True, help="Ignore a saved checkpoint and start over.")
@click.option("--max-steps", type=int, default=0, hidden=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--recipe",
    type=click.Choice(["mixed", "calls"]),
    default=None,
    help="Examples: spans on internal-API calls + line spans, or causal chunks + FIM (default: calls).",
)
@click.option("--epochs", type=float, default=None, help="Epochs to plan for (default from config).")
@click.option(
    "--background",
    is_flag=True,
    help="Train at the lowest priority, in chunks, while the machine is idle (resumable).",
)
@click.option(
    "--hours", type=float, default=8.0, show_default=True, help="--background: how long to keep at it."
)
@click.option(
    "--chunk-minutes", type=float, default=10.0, show_default=True, help="--background: longest chunk."
)
@click.option(
    "--max-busy",
    type=click.FloatRange(0.0, 1.0),
    default=0.25,
    show_default=True,
    help="--background: others' share of the CPUs above which training pauses.",
)
@click.option("--until-done", is_flag=True, help="--background: exit when the plan is done.")
@click.option("--settle-seconds", type=float, default=60.0, hidden=True)
@click.option("--keep-priority", is_flag=True, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print the training report as JSON.")
def train_cmd(
    base: str | None,
    lora: bool | None,
    max_minutes: float | None,
    device: str,
    restart: bool,
    max_steps: int,
    seed: int,
    recipe: str | None,
    epochs: float | None,
    background: bool,
    hours: float,
    chunk_minutes: float,
    max_busy: float,
    until_done: bool,
    settle_seconds: float,
    keep_priority: bool,
    as_json: bool,
) -> int:
    """Fine-tune on the repository's tracked Python files and save to .ect/model/.

    A later run resumes from the checkpoint (optimizer state and data position); after the code changed
    it refreshes the model on the changed files plus rehearsal instead of starting over."""
    if background and not keep_priority:
        from ect.models.background import lower_priority

        lower_priority()  # before torch starts its threads: they inherit the priority
    root, cfg, settings = _context()
    from ect.models.after_commit import LOG_NAME, hold_trainer_lock, running_trainer

    if hold_trainer_lock(cfg.state_path) is None:  # one trainer per repository: they share the checkpoint
        raise EctError(
            f"another 'ect model train' runs here (pid {running_trainer(cfg.state_path)}, log "
            f"{cfg.state_path / LOG_NAME}): wait for it or stop it"
        )
    from ect.models.train import train_model

    from ect import events

    if recipe is not None:
        settings.recipe = recipe
    if hours <= 0 or chunk_minutes <= 0:
        raise EctError("--hours and --chunk-minutes must be positive")
    t0 = time.time()
    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    if background:
        from ect.models.background import IdleMonitor, run_background

        first = [restart]
        priority = "normal priority" if keep_priority else "lowest priority (nice 19, SCHED_IDLE)"
        echo(
            f"background training (pid {os.getpid()}): {priority}, chunks of at most"
            f"  {chunk_minutes:g} min after the machine has been idle {settle_seconds:g}s, for up to "
            f"{hours:g} h{' or until the model is up to date' if until_done else ''}"
        )

        def chunk(minutes: float, should_stop: Any) -> dict[str, Any]:
            rep = train_model(
                root,
                cfg.state_path,
                settings,
                base=base,
                lora=lora,
                max_minutes=minutes,
                device=device,
                seed=seed,
                restart=first[0],
                progress=False,
                echo=echo,
                max_epochs=epochs,
                plan_to_budget=False,
                should_stop=should_stop,
            )
            first[0] = False
            return asdict(rep)

        bg = run_background(
            chunk,
            hours,
            chunk_minutes,
            IdleMonitor(max_busy=max_busy),
            settle_s=settle_seconds,
            echo=echo,
            until_done=until_done,
        )
        events.record(
            cfg.state_path,
            "model.trained",
            source="background",
            repo=root.name,
            duration_ms=(time.time() - t0) * 1000,
            outcome="ok" if bg.finished else "partial",
            chunks=bg.chunks,
            steps=bg.steps,
        )
        out = asdict(bg)
        click.echo(
            json.dumps(out, indent=2)
            if as_json
            else f"background: {bg.chunks} chunks, {bg.steps} steps in {bg.seconds_training:.0f}s of "
            f"training ({bg.seconds_waiting:.0f}s waiting for an idle machine, {bg.stops_busy} stops)"
        )
        return 0
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
        max_epochs=epochs,
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
    """The local fine-tuned model or the newest matching team model (see `choose_model`), else the
    base, wrapped in a Completer."""
    from ect.models.complete import Completer
    from ect.models.index import SymbolIndex
    from ect.models.modeling import load_base, load_trained, resolve_base
    from ect.models.settings import model_dir
    from ect.models.team import choose_model

    index = SymbolIndex.build(root, cfg.state_path, settings.internal)
    choice = choose_model(root, model_dir(cfg), settings)
    if not use_base and choice.path is not None:
        m, tok, _ = load_trained(choice.path)
        return Completer(m, tok, index, settings, member_list=False), choice.name
    m, tok = load_base(resolve_base(settings.base, root))
    return Completer(m, tok, index, settings), "base"


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


@model.command("publish")
@click.option(
    "--to",
    "dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Team directory (default: config team_dir).",
)
def publish_cmd(dest: Path | None) -> int:
    """Publish .ect/model/ to the team directory, named by the commit it was trained at."""
    from ect.models.settings import model_dir
    from ect.models.team import publish_model, team_dir

    root, cfg, settings = _context()
    target = dest if dest is not None else team_dir(root, settings)
    if target is None:
        raise EctError("no team directory: pass --to DIR or set [tool.ect.model] team_dir")
    out = publish_model(model_dir(cfg), target)
    click.echo(f"published {out}")
    return 0


@model.command("which")
@click.option("--json", "as_json", is_flag=True)
def which_cmd(as_json: bool) -> int:
    """Which model `ect model complete` and `ect lsp` use here, and why."""
    from ect.models.settings import model_dir
    from ect.models.team import choose_model

    root, cfg, settings = _context()
    c = choose_model(root, model_dir(cfg), settings)
    info = {"model": c.name, "path": str(c.path) if c.path else None, "commit": c.commit, "behind": c.behind}
    info["reason"] = c.reason
    from ect.models.after_commit import LOG_NAME, running_trainer

    trainer = running_trainer(cfg.state_path)
    info["training_pid"] = trainer
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        where = (
            f"{c.path} (trained at {c.commit[:10] or '?'}, {c.behind} commits behind HEAD)"
            if c.path
            else c.reason
        )
        click.echo(f"{c.name}: {where}")
        if trainer is not None:
            click.echo(f"training now: pid {trainer} (log {cfg.state_path / LOG_NAME})")
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
