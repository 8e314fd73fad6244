"""The team model: publish a trained model where the team shares things, and pick the newest one that
matches the code checked out here (no torch here).

A team directory (`[tool.ect.model] team_dir`: a shared or network-mounted path, relative to the
repository or absolute) holds one folder per published model, `<commit>-<UTC time>/`, each a complete
model directory whose `ect_model.json` records the commit it was trained at. A model matches when that
commit is an ancestor of HEAD at most `team_max_behind` commits back; the closest one wins.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ect.models.gitinfo import commits_behind
from ect.models.modeling import META_FILE, read_meta
from ect.models.settings import ModelSettings

from ect.errors import EctError

MAX_CANDIDATES = 500  # folders looked at in a team directory (newest names first)


@dataclass
class ModelChoice:
    path: Path | None  # None: use the base model
    name: str  # 'fine-tuned' (local), 'team' or 'base'
    commit: str = ""
    behind: int | None = None  # commits between the model's commit and HEAD
    reason: str = ""


def team_dir(root: Path, settings: ModelSettings) -> Path | None:
    if not settings.team_dir:
        return None
    p = Path(settings.team_dir).expanduser()
    return p if p.is_absolute() else root / p


def publish_model(model_dir: Path, dest: Path) -> Path:
    """Copy the trained model in `model_dir` into the team directory `dest`; returns the new folder.
    The copy is written beside its final name and renamed into place, so readers never see half of it."""
    meta = read_meta(model_dir)
    if not meta:
        raise EctError(f"no trained model in '{model_dir}': run 'ect model train' first")
    commit = str(meta.get("commit") or "")
    if not commit:
        raise EctError(f"the model in '{model_dir}' records no commit: train it again in a git repository")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(float(meta.get("created") or time.time())))
    name = f"{commit[:12]}-{stamp}"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        final = dest / name
        if final.exists():
            return final  # the same model was published before
        tmp = dest / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp, ignore=shutil.ignore_patterns("*.tmp"))
        published = {**meta, "published": time.time()}
        (tmp / META_FILE).write_text(json.dumps(published, indent=2) + "\n")
        tmp.replace(final)
    except OSError as exc:
        raise EctError(f"cannot publish to '{dest}': {exc.strerror or exc}") from None
    return final


def find_team_model(root: Path, settings: ModelSettings | None = None) -> Path | None:
    """The newest published team model that matches the code at `root`'s HEAD (trained at an ancestor
    at most `team_max_behind` commits back; the closest, then the most recently created), else None
    (the caller falls back to the base)."""
    return _best_team(root, settings or ModelSettings()).path


def _best_team(root: Path, settings: ModelSettings) -> ModelChoice:
    folder = team_dir(root, settings)
    if folder is None or not folder.is_dir():
        return ModelChoice(None, "base", reason="no team directory")
    best: tuple[int, float, Path, str] | None = None
    too_old = 0
    try:
        entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), reverse=True)
    except OSError:
        return ModelChoice(None, "base", reason=f"cannot read {folder}")
    for p in entries[:MAX_CANDIDATES]:
        meta = read_meta(p)
        commit = str(meta.get("commit") or "")
        if not commit:
            continue
        behind = commits_behind(root, commit)
        if behind is None:
            continue
        if behind > settings.team_max_behind:
            too_old += 1
            continue
        key = (behind, -float(meta.get("created") or 0.0), p, commit)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is None:
        why = f"{too_old} team model(s) older than {settings.team_max_behind} commits" if too_old else ""
        return ModelChoice(None, "base", reason=why or "no team model matches this code")
    return ModelChoice(best[2], "team", best[3], best[0])


def choose_model(root: Path, local_dir: Path, settings: ModelSettings) -> ModelChoice:
    """The model `ect model complete` and `ect lsp` should load: the local fine-tuned model in
    `local_dir` or the newest matching team model, whichever was trained closer to HEAD (the local one
    on a tie, and when its commit is unknown), else the base (path None)."""
    team = _best_team(root, settings)
    meta = read_meta(local_dir) if (local_dir / META_FILE).is_file() else {}
    if meta:
        commit = str(meta.get("commit") or "")
        behind = commits_behind(root, commit) if commit else None
        if team.path is None or behind is None or behind <= (team.behind or 0):
            return ModelChoice(local_dir, "fine-tuned", commit, behind)
    return team
