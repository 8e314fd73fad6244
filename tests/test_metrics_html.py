"""The HTML report is one self-contained file whose charts render in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the HTML report needs the report extra")

from ect import events

CHROMIUM = next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
)


def _history(state: Path, now: float) -> None:
    for i in range(60):
        t = now - 3600 * 5 * i
        events.record(
            state,
            "loop.run",
            ts=t,
            source="hook",
            repo="r",
            outcome="pass" if i % 3 else "fail",
            duration_ms=100.0 + i,
            phases={"changes": 2.0, "compile": 10.0, "select": 1.0, "tests": 80.0 + i},
            test_files_selected=2,
            test_files_total=9,
        )
        events.record(state, "completion.shown", ts=t)
        if i % 2:
            events.record(state, "completion.accepted", ts=t, chars=30)
    for i in range(12):
        t = now - 20_000 * i - 50
        events.record(
            state,
            "git.commit",
            ts=t,
            commit_sha=f"c{i}",
            outcome="checked",
            chars=300,
            loop_runs=2 + i % 3,
            first_run_outcome="pass" if i % 2 else "fail",
            first_run_ts=t - 900,
            accepted=i % 2,
        )
        events.record(
            state,
            "promotion.done",
            ts=t + 10,
            stage="production",
            commit_sha=f"c{i}",
            first_commit_ts=t - 7200,
        )


@pytest.fixture
def html_report(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _history(repo / ".ect", time.time() - 600)
    out = tmp_path / "report.html"
    env = {k: v for k, v in os.environ.items() if k != "ECT_METRICS_URL"}
    res = subprocess.run(
        [sys.executable, "-m", "ect", "report", "--since", "30d", "--format", "html", "--output", str(out)],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    return out


def test_html_is_self_contained(html_report: Path) -> None:
    text = html_report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), (
        "must not load anything from the network"
    )
    assert "<script" not in text
    assert text.count("<svg") >= 4


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_html_charts_render_in_headless_chromium(html_report: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", html_report.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = re.findall(r'<div class="chart" data-chart="([^"]+)">\s*<svg', dom.stdout)
    assert charts == [
        "Weekly trends",
        "Loop latency by phase",
        "Deployments to production per week",
        "A/B: changes with vs without accepted completions",
    ]
    assert dom.stdout.count("<path") > 50  # bars, lines and text drawn as paths
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [CHROMIUM, *flags, "--window-size=1200,2000", f"--screenshot={shot}", html_report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and shot.stat().st_size > 20_000
