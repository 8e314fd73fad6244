"""Rotating held-out folds for `scripts/bench_model.py --folds`: the split (disjoint, covering,
deterministic, balanced), the corpus of one fold on a real git repository, and pooling of fold results
into one paired comparison. No torch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ect.models.corpus import build_corpus, fold_split
from ect.models.evaluate import paired_comparison, pool_folds

from ect.errors import EctError


def test_fold_split_is_disjoint_covering_balanced_and_deterministic() -> None:
    paths = [f"pkg/sub{i % 7}/mod_{i}.py" for i in range(271)]
    folds = fold_split(paths, 5)
    assert set(folds) == set(paths)  # every file has exactly one fold (a dict: disjoint)
    sizes = [sum(1 for f in folds.values() if f == i) for i in range(5)]
    assert sum(sizes) == 271 and max(sizes) - min(sizes) <= 1
    assert fold_split(list(reversed(paths)), 5) == folds  # the order given does not matter
    assert fold_split(paths + paths[:3], 5) == folds  # nor do repeated paths
    # not a slice of the sorted list: neighbouring files of one folder spread over the folds
    assert len({folds[p] for p in paths if p.startswith("pkg/sub0/")}) == 5
    # a new file moves few others (hash order, dealt out in turn)
    grown = fold_split([*paths, "pkg/new.py"], 5)
    assert sum(grown[p] != folds[p] for p in paths) < len(paths)
    with pytest.raises(EctError, match="at least 2"):
        fold_split(paths, 1)
    with pytest.raises(EctError, match="3 files cannot make 4 folds"):
        fold_split(paths[:3], 4)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folds")
    for i in range(11):
        (root / "pkg").mkdir(exist_ok=True)
        (root / "pkg" / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
    (root / "pkg" / "dup.py").write_text("def f0(x):\n    return x + 0\n")  # a duplicate of m0
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


def test_each_file_is_held_out_in_exactly_one_fold_of_the_corpus(repo: Path) -> None:
    everything = {f.path for f in build_corpus(repo, held_out_percent=0).train}
    assert len(everything) == 11  # the duplicate is dropped before the split
    held: list[str] = []
    for i in range(4):
        corpus = build_corpus(repo, fold=(i, 4))
        fold_files = {f.path for f in corpus.held_out}
        assert fold_files and fold_files.isdisjoint(f.path for f in corpus.train)
        assert fold_files | {f.path for f in corpus.train} == everything
        assert {f.path for f in build_corpus(repo, fold=(i, 4)).held_out} == fold_files  # deterministic
        held += fold_files
    assert sorted(held) == sorted(everything)  # covering, and no file held out twice
    with pytest.raises(EctError, match="fold 4 does not exist"):
        build_corpus(repo, fold=(4, 4))


def _fold_result(paths: list[str], base: list[float], tuned: list[float]) -> dict[str, object]:
    def row(name: str, scores: list[float], p50: float) -> dict[str, object]:
        return {
            "name": name,
            "api_call": {"ident_acc": sum(scores) / len(scores), "n": len(scores)},
            "next_line": {},
            "call_ident_per_task": scores,
            "halluc_before": 0.1,
            "halluc_after": 0.0,
            "latency_p50_ms": p50,
            "latency_p95_ms": 2 * p50,
            "keystroke_savings": 0.2,
        }

    return {
        "repo": "r",
        "rows": [row("base model", base, 30.0), row("fine-tuned", tuned, 40.0 + len(paths))],
        "call_task_paths": paths,
        "held_out_files": len(set(paths)),
        "train_files": 40,
        "lines": 1000,
        "tasks": {"next_line": 0, "api_call": len(paths)},
    }


def test_pooled_folds_give_one_paired_comparison_over_all_tasks_and_files() -> None:
    folds = []
    all_base: list[float] = []
    all_tuned: list[float] = []
    all_paths: list[str] = []
    for k in range(3):  # 3 folds of 8 files x 15 tasks: 360 tasks from 24 files
        paths = [f"fold{k}/f{i // 15}.py" for i in range(120)]
        base = [float(i % 2) for i in range(120)]
        tuned = [1.0 if i % 10 < 6 + k else 0.0 for i in range(120)]
        folds.append(_fold_result(paths, base, tuned))
        all_base += base
        all_tuned += tuned
        all_paths += paths
    pooled = pool_folds(folds)  # type: ignore[arg-type]
    (cmp,) = pooled["paired"]
    assert cmp["tasks"] == 360 and cmp["files"] == 24 and pooled["call_task_files"] == 24
    expected = paired_comparison(all_tuned, all_base, all_paths)
    assert {k: cmp[k] for k in expected if k not in ("a", "b")} == {
        k: v for k, v in expected.items() if k not in ("a", "b")
    }
    tuned_row = next(r for r in pooled["rows"] if r["name"] == "fine-tuned")
    assert tuned_row["api_call"]["n"] == 360
    assert tuned_row["api_call"]["ident_acc"] == pytest.approx(sum(all_tuned) / 360, abs=1e-4)
    assert tuned_row["latency_p50_ms"] == 160.0  # the worst fold's
    assert pooled["held_out_files"] == 24 and pooled["tasks"]["api_call"] == 360
    with pytest.raises(ValueError):
        pool_folds([])
