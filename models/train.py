"""Fine-tuning on the repository (full or LoRA), checkpoint chosen by held-out loss, resumable."""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ect.models.corpus import (
    Corpus,
    SourceFile,
    api_examples,
    build_corpus,
    rehearsal_examples,
    training_examples,
)
from ect.models.gitinfo import changed_since, head_commit
from ect.models.index import SymbolIndex
from ect.models.modeling import DEFAULT_BASE, check_base_dir, load_base, resolve_base, save_model
from ect.models.settings import ModelSettings

from ect.errors import EctError

SEQ_LEN = 512
BATCH = 8
WARMUP = 20


@dataclass
class TrainReport:
    out_dir: str
    base: str
    lora: bool
    device: str
    steps: int
    epochs: float
    tokens: int
    seconds: float
    parameters: int
    trainable: int
    held_out_loss_before: float
    held_out_loss_after: float
    best_step: int
    files_train: int
    files_held_out: int
    lines: int
    secrets_masked: int
    symbols: int
    resumed: bool
    finished: bool
    rehearsal: float = 0.0  # general Python mixed in, as a fraction of the repository's examples
    fine_tune_weight: float = 1.0  # the saved weights: base + this x (best checkpoint - base)
    held_out_loss_checkpoint: float = 0.0  # the best checkpoint's, before blending with the base
    recipe: str = "mixed"  # 'mixed' (causal chunks + FIM) or 'calls' (short spans on internal-API calls)
    commit: str = ""  # the commit the training data was read at
    refresh_files: int = 0  # > 0: an incremental refresh on this many changed files (plus rehearsal)
    stopped: str = ""  # why this run stopped early ('busy' in --background mode), else ''
    new_steps: int = 0  # steps made by this invocation (steps counts all of the current plan)


def epoch_texts(
    corpus: Corpus,
    index: SymbolIndex,
    settings: ModelSettings,
    seed: int,
    files: list[SourceFile] | None = None,
) -> list[str]:
    """One epoch of training texts for `settings.recipe`, from `files` (default: all training files)."""
    if settings.recipe == "calls":
        return api_examples(corpus, index, seed, files=files, per_api=settings.call_sites_per_api)
    return training_examples(corpus, index, seed=seed, files=files)


def refresh_files(corpus: Corpus, changed: set[str] | None, seed: int) -> list[SourceFile] | None:
    """The files an incremental refresh trains on: the changed training files plus as many unchanged
    ones (at least 4) drawn at random as rehearsal, so the model keeps the rest of the repository.
    None (train on everything) when the changes are unknown or touch most of the files."""
    if changed is None:
        return None
    fresh = [f for f in corpus.train if f.path in changed]
    if len(fresh) * 2 >= len(corpus.train):
        return None
    rest = [f for f in corpus.train if f.path not in changed]
    rehearse = random.Random(seed).sample(rest, min(len(rest), max(4, len(fresh))))
    return fresh + rehearse


class Progress:
    """A one-line progress bar on stderr: loss, tokens/s, ETA."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(
        self, step: int, loss: float, held: float, tok_s: float, eta_s: float, force: bool = False
    ) -> None:
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self.last < (0.5 if self.tty else 15):
            return
        self.last = now
        done = int(20 * min(step, self.total) / self.total)
        bar = "#" * done + "-" * (20 - done)
        held_s = f" held-out {held:.3f}" if held == held else ""
        line = (
            f"step {step}/{self.total} [{bar}] loss {loss:.3f}{held_s} "
            f"{tok_s / 1000:.1f}k tok/s ETA {int(eta_s) // 60}:{int(eta_s) % 60:02d}"
        )
        print(
            ("\r" + line + "\x1b[K") if self.tty else line,
            end="" if self.tty else "\n",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def pack(tok: Any, texts: list[str], seq_len: int = SEQ_LEN) -> Any:
    """Tokenize and pack `texts` into a (blocks, seq_len) LongTensor."""
    import torch

    ids: list[int] = []
    for i in range(0, len(texts), 512):
        for row in tok(texts[i : i + 512], add_special_tokens=False)["input_ids"]:
            ids.extend(row)
    n = max(1, len(ids) // seq_len)
    if len(ids) < seq_len:
        ids = ids + [tok.pad_token_id or 0] * (seq_len - len(ids))
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def _corpus_hash(corpus: Corpus) -> str:
    h = hashlib.blake2b(digest_size=12)
    for f in corpus.train + corpus.held_out:
        h.update(f.path.encode())
        h.update(hashlib.blake2b(f.text.encode(), digest_size=8).digest())
    return h.hexdigest()


def _report_from_saved(out_dir: Path, resumed: bool, finished: bool, stopped: str) -> TrainReport:
    meta = json.loads((out_dir / "train_report.json").read_text())
    known = {k: meta[k] for k in TrainReport.__dataclass_fields__ if k in meta}
    known.update(resumed=resumed, finished=finished, stopped=stopped, new_steps=0, out_dir=str(out_dir))
    return TrainReport(**known)


def _apply_lora(model: Any, r: int = 16) -> Any:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    return get_peft_model(model, cfg)


def blend_with_base(model: Any, base_path: Path, weight: float, lora: bool) -> None:
    """Weight-space ensembling with the base (WiSE-FT): weights = base + weight x (fine-tuned - base).
    It keeps more of what the base knew; for LoRA the adapter's update is scaled instead."""
    import torch

    with torch.no_grad():
        if lora:
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.mul_(weight)
            return
        base_state = load_base(base_path, "cpu")[0].state_dict()
        for name, p in model.named_parameters():
            b = base_state[name].to(p.device, p.dtype)
            p.copy_(b + weight * (p - b))


def train_model(
    root: Path,
    state_dir: Path,
    settings: ModelSettings,
    *,
    base: str | None = None,
    lora: bool | None = None,
    max_minutes: float | None = None,
    device: str = "cpu",
    seed: int = 0,
    restart: bool = False,
    progress: bool = True,
    max_steps: int = 0,
    echo: Callable[[str], None] = print,
    max_epochs: float | None = None,
    plan_to_budget: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> TrainReport:
    """Build the corpus and index, fine-tune the base, keep the best held-out checkpoint, save it.

    Continual: the optimizer state, data position and best weights are checkpointed in
    `model-checkpoint/`, and a later run resumes there. When the code changed since the checkpoint, the
    run is an incremental refresh from the best weights so far: files changed since the recorded commit
    plus rehearsal (see `refresh_files`). `plan_to_budget` fits the learning-rate schedule to this run's
    time budget (foreground); off, the schedule spans the whole plan over many short runs (background).
    `should_stop` is polled after each step; True saves the checkpoint and ends the run."""
    import torch

    from ect.state import ensure_state_dir

    t_start = time.time()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise EctError(f"unknown device '{device}' (use auto, cpu or cuda)")
    if device == "cuda" and not torch.cuda.is_available():
        raise EctError("--device cuda: no CUDA device is available")
    use_lora = settings.lora if lora is None else lora
    minutes = settings.max_minutes if max_minutes is None else max_minutes
    if minutes <= 0:
        raise EctError("--max-minutes must be positive")
    base_path = resolve_base(base if base is not None else settings.base, root)
    check_base_dir(base_path)
    ensure_state_dir(state_dir)
    out_dir = state_dir / "model"
    ckpt_dir = state_dir / "model-checkpoint"

    index = SymbolIndex.build(root, state_dir, settings.internal)
    corpus = build_corpus(root, settings.held_out_percent, settings.exclude, settings.held_out_fold)
    if not corpus.train:
        raise EctError("no git-tracked Python files to train on")
    echo(
        f"corpus: {len(corpus.train)} train / {len(corpus.held_out)} held-out files, {corpus.lines} lines, "
        f"{corpus.masked} secrets masked; index: {len(index)} symbols"
    )

    torch.manual_seed(seed)
    model, tok = load_base(base_path, device)
    n_params = sum(p.numel() for p in model.parameters())
    if use_lora:
        model = _apply_lora(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    lr = settings.lr or (1e-3 if use_lora else 3e-4)
    opt = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)

    recipe = settings.recipe
    # held-out loss on examples of the recipe's own kind: what the steps are meant to improve
    held_texts = epoch_texts(corpus, index, settings, 10_000, corpus.held_out or corpus.train[:1])
    held = pack(tok, held_texts)[:24].to(device)
    corpus_hash = _corpus_hash(corpus)
    commit = head_commit(root) or ""
    signature = {
        "base": str(base_path.resolve()),
        "lora": use_lora,
        "seed": seed,
        "recipe": recipe,
        "call_sites_per_api": settings.call_sites_per_api,
    }
    use_bf16 = device == "cuda"

    def held_loss() -> float:
        model.eval()
        losses = []
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            for i in range(0, held.shape[0], BATCH):
                losses.append(float(model(input_ids=held[i : i + BATCH], labels=held[i : i + BATCH]).loss))
        model.train()
        return sum(losses) / len(losses)

    def trainable_state() -> dict[str, Any]:
        return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}

    fresh_state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "pos": 0,
        "tokens": 0,
        "elapsed": 0.0,
        "total_steps": 0,
        "corpus": corpus_hash,
        "commit": commit,
        "files": None,
        "stale": 0,
    }
    state: dict[str, Any] = dict(fresh_state)
    resumed = False
    refreshing = False
    if restart and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    if (ckpt_dir / "state.pt").is_file():
        try:
            saved = torch.load(ckpt_dir / "state.pt", map_location="cpu", weights_only=False)
            if saved.get("signature") == signature:
                model.load_state_dict(saved["params"], strict=False)
                opt.load_state_dict(saved["optimizer"])
                state = {**fresh_state, **saved["state"]}
                resumed = True
                if state["corpus"] != corpus_hash:  # the code changed: refresh from the best weights
                    model.load_state_dict(state["best_state"], strict=False)
                    changed = changed_since(root, state.get("commit") or "")
                    files = refresh_files(corpus, changed, seed + int(state["tokens"]) % 9973)
                    tokens, elapsed = state["tokens"], state["elapsed"]
                    state = dict(fresh_state, tokens=tokens, elapsed=elapsed)
                    state["files"] = None if files is None else [f.path for f in files]
                    refreshing = True
                    echo(
                        f"code changed since {(saved['state'].get('commit') or '?')[:10]}: refreshing on "
                        + (
                            "all files"
                            if files is None
                            else f"{sum(f.path in (changed or ()) for f in files)} changed + "
                            f"{sum(f.path not in (changed or ()) for f in files)} rehearsal files"
                        )
                    )
                elif state.get("done"):
                    echo(f"up to date: the model in {out_dir} was trained at this code ({commit[:10]})")
                else:
                    echo(f"resuming at step {state['step']} (epoch {state['epoch']})")
        except (OSError, RuntimeError, KeyError, ValueError, EOFError):
            echo("checkpoint unreadable: starting over")

    t_eval = time.time()
    before = state.get("loss_before") or held_loss()
    if refreshing:
        state["best"] = (before, 0)
        state["best_state"] = trainable_state()
    eval_seconds = time.time() - t_eval
    state["loss_before"] = before
    best = state.get("best") or (before, 0)
    best_state = state.get("best_state") or trainable_state()
    # --max-minutes bounds the whole command: set-up so far, the steps, and a last evaluation and save
    budget = minutes * 60 - (time.time() - t_start) - 3 * eval_seconds - 5
    t0 = time.time()  # the time budget is per invocation; state["elapsed"] adds up over resumed runs
    elapsed_before = float(state["elapsed"])
    tokens_before = int(state["tokens"])
    epochs_total = settings.max_epochs if max_epochs is None else max_epochs
    train_files: list[SourceFile] | None = None
    if state.get("files") is not None:
        wanted = set(state["files"])
        train_files = [f for f in corpus.train if f.path in wanted]
    epoch_blocks: Any = None
    per_step = 0.0
    bar: Progress | None = None
    last_loss = float("nan")
    stale = int(state.get("stale", 0))
    finished = bool(state.get("done"))
    stopped = ""
    steps_at_start = int(state["step"])

    def save_checkpoint() -> None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        state["elapsed"] = elapsed_before + time.time() - t0
        state["best"] = best
        state["best_state"] = best_state
        state["stale"] = stale
        payload = {
            "signature": signature,
            "params": trainable_state(),
            "optimizer": opt.state_dict(),
            "state": state,
        }
        torch.save(payload, ckpt_dir / "state.pt.tmp")
        (ckpt_dir / "state.pt.tmp").replace(ckpt_dir / "state.pt")

    model.train()
    try:
        while not finished:
            if epoch_blocks is None:
                texts = epoch_texts(corpus, index, settings, seed * 1000 + state["epoch"], train_files)
                if settings.rehearsal > 0:  # general Python mixed in: keep what the base knew
                    repo_chars = sum(len(t) for t in texts)
                    texts += rehearsal_examples(int(repo_chars * settings.rehearsal), seed + state["epoch"])
                    random.Random(seed + state["epoch"]).shuffle(texts)
                epoch_blocks = pack(tok, texts)
                g = torch.Generator().manual_seed(seed * 1000 + state["epoch"])
                epoch_blocks = epoch_blocks[torch.randperm(epoch_blocks.shape[0], generator=g)]
                if not state["total_steps"]:
                    steps_per_epoch = math.ceil(epoch_blocks.shape[0] / BATCH)
                    state["total_steps"] = max(1, int(steps_per_epoch * epochs_total))
                    if max_steps:
                        state["total_steps"] = min(state["total_steps"], max_steps)
                    state["max_total_steps"] = state["total_steps"]
            if state["pos"] >= epoch_blocks.shape[0]:  # end of an epoch (also one a resumed run had finished)
                state["epoch"] += 1
                state["pos"] = 0
                epoch_blocks = None
                if state["epoch"] >= math.ceil(epochs_total):
                    finished = True
                    break
                continue
            if bar is None:
                bar = Progress(state["total_steps"], progress)
            if state["step"] >= state["total_steps"]:
                finished = True
                break
            batch = epoch_blocks[state["pos"] : state["pos"] + BATCH].to(device)
            state["pos"] += BATCH
            step = state["step"]
            if step < WARMUP:
                cur_lr = lr * (step + 1) / WARMUP
            else:
                frac = min(1.0, (step - WARMUP) / max(1, state["total_steps"] - WARMUP))
                cur_lr = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for group in opt.param_groups:
                group["lr"] = cur_lr
            ts = time.time()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
                loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            state["tokens"] += int(batch.numel())
            last_loss = float(loss.detach())
            dt = time.time() - ts
            per_step = dt if per_step == 0 else 0.9 * per_step + 0.1 * dt
            elapsed = time.time() - t0
            # re-plan: never run past the time budget
            steps_left_budget = int(max(0.0, budget - elapsed) / max(per_step, 1e-6))
            if plan_to_budget and (state["step"] in (5, 20, 50) or state["step"] % 100 == 0):
                planned = min(
                    state.get("max_total_steps", state["total_steps"]), state["step"] + steps_left_budget
                )
                if planned != state["total_steps"]:
                    state["total_steps"] = max(planned, state["step"])
                    bar = Progress(state["total_steps"], progress)
            eval_every = max(10, state["total_steps"] // 8)
            held_now = float("nan")
            if state["step"] % eval_every == 0 or state["step"] >= state["total_steps"]:
                held_now = held_loss()
                if held_now < best[0]:
                    best = (held_now, state["step"])
                    best_state = trainable_state()
                    stale = 0
                else:
                    stale += 1
                save_checkpoint()
            eta = (state["total_steps"] - state["step"]) * per_step
            bar.update(
                state["step"],
                last_loss,
                held_now,
                (state["tokens"] - tokens_before) / max(elapsed, 1e-6),
                eta,
                force=held_now == held_now,
            )
            if stale >= 3 and state["step"] < state["total_steps"]:  # (at the last step: just done)
                finished = True
                echo("") if bar.tty and progress else None
                echo(f"held-out loss stopped improving: stopping at step {state['step']}")
                break
            if elapsed > budget:
                break
            if should_stop is not None and should_stop():
                stopped = "busy"
                break
    except KeyboardInterrupt:
        save_checkpoint()
        if bar is not None:
            bar.close()
        raise EctError("interrupted: run 'ect model train' again to resume", 130) from None
    if bar is not None:
        bar.close()
    if not finished and state["step"] < state["total_steps"]:
        save_checkpoint()
        why = "the machine is busy" if stopped else "time budget reached"
        echo(f"{why} at step {state['step']}/{state['total_steps']}: run again to resume")
    else:
        finished = True
        state["done"] = True  # kept: the next run after a commit refreshes from here
        save_checkpoint()
    if state["step"] == steps_at_start and (out_dir / "ect_model.json").is_file() and not refreshing:
        # nothing new was learnt: the saved model stands (no second blend, no rewrite)
        return _report_from_saved(out_dir, resumed, finished, stopped)

    model.load_state_dict(best_state, strict=False)
    loss_after = best[0]
    if settings.fine_tune_weight < 1.0 and best[1] > 0:
        blend_with_base(model, base_path, settings.fine_tune_weight, use_lora)
        loss_after = held_loss()
    tmp_out = state_dir / "model.tmp"
    if tmp_out.exists():
        shutil.rmtree(tmp_out)
    seconds = elapsed_before + time.time() - t0
    steps_per_epoch = max(1, math.ceil((epoch_blocks.shape[0] if epoch_blocks is not None else 1) / BATCH))
    report = TrainReport(
        out_dir=str(out_dir),
        base=str(base_path.resolve()),
        lora=use_lora,
        rehearsal=settings.rehearsal,
        device=device,
        steps=state["step"],
        epochs=round(state["step"] / steps_per_epoch, 2),
        tokens=state["tokens"],
        seconds=round(seconds, 1),
        parameters=n_params,
        trainable=n_trainable,
        held_out_loss_before=round(before, 4),
        held_out_loss_after=round(loss_after, 4),
        held_out_loss_checkpoint=round(best[0], 4),
        fine_tune_weight=settings.fine_tune_weight if best[1] > 0 else 1.0,
        best_step=best[1],
        files_train=len(corpus.train),
        files_held_out=len(corpus.held_out),
        lines=corpus.lines,
        secrets_masked=corpus.masked,
        symbols=len(index),
        resumed=resumed,
        finished=finished,
        recipe=recipe,
        commit=state.get("commit") or commit,
        refresh_files=len(state["files"] or ()) if state.get("files") is not None else 0,
        stopped=stopped,
        new_steps=int(state["step"]) - steps_at_start,
    )
    model.to("cpu")
    meta = {
        **asdict(report),
        "created": time.time(),
        "seed": seed,
        "total_seconds": round(time.time() - t_start, 1),
    }
    if base_path.resolve() == DEFAULT_BASE.resolve():
        meta["base"] = "default"
    save_model(model, tok, tmp_out, meta)
    (tmp_out / "train_report.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out_dir.exists():  # swap in whole: a reader (ect lsp) never sees a half-written model
        shutil.rmtree(out_dir)
    tmp_out.replace(out_dir)
    random.seed(seed)
    return report
