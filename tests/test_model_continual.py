"""Continual training (stop when busy, resume, refresh after a commit), the team model, the paired
comparison and capped task sampling, on a tiny model and real git repositories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ect.models.corpus import Corpus, SourceFile
from ect.models.evaluate import make_tasks, paired_comparison
from ect.models.index import SymbolIndex
from ect.models.settings import ModelSettings

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import test_model_train as shared  # noqa: E402

APP, STORE, git = shared.APP, shared.STORE, shared.git
tiny_base = shared.tiny_base  # the module-scoped fixture, shared


def commit(root: Path, msg: str) -> str:
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", msg)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    files = {
        "shop/__init__.py": "",
        "shop/store.py": STORE,
        "app.py": APP,
        "app2.py": APP.replace("main", "m2"),
    }
    for i in range(6):
        files[f"more/m{i}.py"] = STORE.replace("Store", f"Store{i}")
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    git(tmp_path, "init", "-q")
    commit(tmp_path, "init")
    return tmp_path


def test_paired_comparison_interval_and_mcnemar() -> None:
    files = [f"f{i // 15}" for i in range(300)]  # 20 files of 15 tasks
    same = [float(i % 3 == 0) for i in range(300)]
    tie = paired_comparison(same, same, files)
    assert tie["diff"] == 0 and tie["lo"] == 0 and tie["hi"] == 0 and tie["p_mcnemar"] == 1.0
    better = [1.0 if i % 10 < 6 else 0.0 for i in range(300)]  # 60%
    worse = [1.0 if i % 10 < 4 else 0.0 for i in range(300)]  # 40%: 60 discordant tasks, all won
    cmp = paired_comparison(better, worse, files)
    assert cmp["diff"] == pytest.approx(0.2) and cmp["lo"] > 0.1 and cmp["hi"] < 0.3
    assert cmp["wins"] == 60 and cmp["losses"] == 0 and cmp["p_mcnemar"] < 1e-9
    assert cmp["tasks"] == 300 and cmp["files"] == 20
    # 1 win, 0 losses in 300 tasks: no evidence; the interval reaches 0
    one = list(worse)
    one[4] = 1.0
    small = paired_comparison(one, worse, files)
    assert small["p_mcnemar"] == 1.0 and small["lo"] <= 0 <= small["hi"]
    with pytest.raises(ValueError):
        paired_comparison([1.0], [1.0, 0.0], ["a"])


def test_paired_comparison_is_split_by_where_the_callee_is_defined() -> None:
    from ect.models.evaluate import _paired

    rows = {
        "fine-tuned": {"call_ident_per_task": [1.0, 1.0, 0.0, 0.0]},
        "base model": {"call_ident_per_task": [0.0, 0.0, 0.0, 1.0]},
    }
    paths = ["a.py", "b.py", "c.py", "d.py"]
    out = _paired(rows, paths, [True, True, False, False])
    assert [p.get("subset", "") for p in out] == ["", "callee in training files", "callee held out"]
    assert [p["diff"] for p in out] == [0.25, 1.0, -0.5] and [p["tasks"] for p in out] == [4, 2, 2]
    assert [p.get("subset", "") for p in _paired(rows, paths, None)] == [""]


def test_tasks_are_capped_per_file(repo: Path) -> None:
    text = APP.replace("vanish_forever", "fetch")
    for i in range(3):
        (repo / f"h{i}.py").write_text(text)
    commit(repo, "held-out files")
    index = SymbolIndex.build(repo, repo / ".ect")
    held = [SourceFile(f"h{i}.py", f"h{i}", text) for i in range(3)]
    corpus = Corpus(train=[], held_out=held)
    tasks = make_tasks(corpus, index, n=100, seed=0, n_calls=100, max_per_file=5)
    calls = [t for t in tasks if t.kind == "api_call"]
    lines = [t for t in tasks if t.kind == "next_line"]
    assert len(calls) == 15 and len(lines) == 15  # 40 calls per file, 5 taken from each of 3 files
    assert {t.file.path for t in calls} == {"h0.py", "h1.py", "h2.py"}
    assert all(t.callee == "fetch" for t in calls)
    assert len([t for t in make_tasks(corpus, index, n=100, seed=0) if t.kind == "api_call"]) == 100
    # where the callee is defined decides the split of the paired comparison: held out here
    assert not any(t.seen for t in calls)
    store = SourceFile("shop/store.py", "shop.store", STORE)
    seen = make_tasks(Corpus(train=[store], held_out=held), index, n=0, seed=0, n_calls=100, max_per_file=5)
    assert seen and all(t.seen for t in seen if t.kind == "api_call")


@pytest.mark.slow
def test_stop_resume_up_to_date_and_refresh_after_commit(repo: Path, tiny_base: Path) -> None:
    from ect.models.train import train_model

    state = repo / ".ect"
    settings = ModelSettings(held_out_percent=20, max_epochs=12, recipe="calls")
    common = {"base": str(tiny_base), "progress": False, "echo": lambda s: None, "max_minutes": 2.0}
    polls = []

    def busy_after_three() -> bool:
        polls.append(1)
        return len(polls) >= 3

    first = train_model(repo, state, settings, should_stop=busy_after_three, plan_to_budget=False, **common)  # type: ignore[arg-type]
    assert first.stopped == "busy" and first.new_steps == 3 and not first.finished
    assert first.recipe == "calls" and len(first.commit) == 40
    assert (state / "model" / "ect_model.json").is_file()  # usable between chunks

    second = train_model(repo, state, settings, plan_to_budget=False, **common)  # type: ignore[arg-type]
    assert second.resumed and second.finished and second.steps > 3 and second.new_steps == second.steps - 3

    third = train_model(repo, state, settings, **common)  # type: ignore[arg-type]
    assert third.finished and third.new_steps == 0 and third.steps == second.steps  # up to date: no work

    (repo / "more" / "m0.py").write_text(
        STORE.replace("def fetch", "def fetch_many") + "\n\nx = Store().fetch_many(1)\n"
    )
    head = commit(repo, "rename fetch in m0")
    fourth = train_model(repo, state, settings, **common)  # type: ignore[arg-type]
    assert fourth.resumed and fourth.new_steps > 0 and fourth.commit == head
    assert 0 < fourth.refresh_files < fourth.files_train  # the changed file plus a few for rehearsal
    meta = json.loads((state / "model" / "ect_model.json").read_text())
    assert meta["commit"] == head and meta["refresh_files"] == fourth.refresh_files


def test_team_model_publish_find_and_fallback(
    repo: Path, tiny_base: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from ect.models.team import choose_model, find_team_model, publish_model
    from ect.models.train import train_model

    from ect.errors import EctError

    team = tmp_path_factory.mktemp("team")
    settings = ModelSettings(held_out_percent=20, team_dir=str(team), team_max_behind=2)
    assert find_team_model(repo, settings) is None  # nothing published: the base
    train_model(
        repo, repo / ".ect", settings, base=str(tiny_base), max_steps=2, progress=False, echo=lambda s: None
    )
    published = publish_model(repo / ".ect" / "model", team)
    trained_at = json.loads((published / "ect_model.json").read_text())["commit"]
    assert published.name.startswith(trained_at[:12]) and (published / "model.safetensors").is_file()
    assert publish_model(repo / ".ect" / "model", team) == published  # publishing twice is one model
    with pytest.raises(EctError, match="no trained model"):
        publish_model(repo / "nowhere", team)

    clone = tmp_path_factory.mktemp("dev") / "clone"  # another developer: no local model
    git(repo, "clone", "-q", str(repo), str(clone))
    assert find_team_model(clone, settings) == published
    choice = choose_model(clone, clone / ".ect" / "model", settings)
    assert choice.name == "team" and choice.behind == 0
    for i in range(3):  # three commits later the model is too old (team_max_behind = 2)
        (clone / f"new{i}.py").write_text(f"X{i} = {i}\n")
        commit(clone, f"c{i}")
    assert find_team_model(clone, settings) is None
    assert choose_model(clone, clone / ".ect" / "model", settings).name == "base"
    git(clone, "checkout", "-q", "--orphan", "other")  # code that does not descend from it: no match
    commit(clone, "unrelated")
    assert find_team_model(clone, ModelSettings(team_dir=str(team), team_max_behind=1000)) is None
    # the local model wins over an equally fresh team model
    local = choose_model(repo, repo / ".ect" / "model", settings)
    assert local.name == "fine-tuned" and local.behind == 0


@pytest.mark.slow
def test_background_cli_trains_until_done_then_publish_and_complete(
    repo: Path, tiny_base: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    team = tmp_path_factory.mktemp("team_cli")
    (repo / "ect.toml").write_text(f'[model]\nbase = "{tiny_base}"\nmax_epochs = 1\nteam_dir = "{team}"\n')

    def ect(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ect", *args], cwd=repo, capture_output=True, text=True, timeout=300
        )

    proc = ect(
        "model",
        "train",
        "--background",
        "--until-done",
        "--max-busy",
        "1",
        "--settle-seconds",
        "0",
        "--keep-priority",  # SCHED_IDLE would wait for an idle machine; CI runners are rarely idle
        "--hours",
        "0.1",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["finished"] and out["chunks"] >= 2 and out["steps"] > 0  # the last chunk found it up to date
    assert ect("model", "publish").returncode == 0
    which = json.loads(ect("model", "which", "--json").stdout)
    assert which["model"] == "fine-tuned" and which["behind"] == 0
    line = APP.splitlines().index("    store.vanish_forever()") + 1
    proc = ect("model", "complete", f"app.py:{line}:11", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["model"] == "fine-tuned", proc.stderr
    bad = ect("model", "train", "--background", "--hours", "0")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and bad.stderr.strip().count("\n") <= 1
    assert ect("model", "publish", "--to", str(repo / "app.py" / "x")).returncode != 0
