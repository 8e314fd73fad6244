"""The HTML report is one self-contained file whose charts render in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
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


def _render(base: Path, fill: Callable[[Path, float], None], since: str) -> Path:
    """`ect report --format html` over a new repository whose event log `fill` wrote."""
    repo = base / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    fill(repo / ".ect", time.time())
    out = base / "report.html"
    env = {k: v for k, v in os.environ.items() if k != "ECT_METRICS_URL"}
    res = subprocess.run(
        [sys.executable, "-m", "ect", "report", "--since", since, "--format", "html", "--output", str(out)],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def html_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _render(tmp_path_factory.mktemp("html"), lambda state, now: _history(state, now - 600), "30d")


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
    charts = re.findall(r'<div class="chart" data-chart="([^"]+)"[^>]*>\s*<svg', dom.stdout)
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


def _year(state: Path, now: float) -> None:
    """53 weeks of loop runs and weekly deployments, and no completion at all."""
    for day in range(371):
        t = now - (370 - day) * 86400 - 3600
        events.record(
            state,
            "loop.run",
            ts=t,
            source="hook",
            outcome="pass" if day % 4 else "fail",
            duration_ms=3500.0,
            phases={"changes": 3.0, "compile": 40.0, "select": 2.0, "tests": 3400.0},
            test_files_selected=1,
            test_files_total=5,
        )
        if day % 7 == 3:
            events.record(state, "promotion.done", ts=t + 60, stage="production", commit_sha=f"d{day}")


CHECK = """<script>
const out = {charts: {}};
for (const chart of document.querySelectorAll('div.chart')) {
  const rects = [...chart.querySelectorAll('g[id^="xlabel-"]')].map(g => g.getBoundingClientRect());
  let overlaps = 0;
  for (let i = 1; i < rects.length; i++) {
    if (rects[i].left < rects[i - 1].right - 0.5) overlaps++;
  }
  const ticks = [...chart.querySelectorAll('g[id^="ytick-"]')].map(g => g.id.split('-').pop());
  const empty = (chart.dataset.empty || '').split('|').filter(Boolean);
  const said = empty.filter(name => {
    const p = chart.querySelector(`p.chart-note.empty[data-series="${name}"]`);
    return p && p.getBoundingClientRect().height > 0 && p.textContent.includes(name);
  });
  out.charts[chart.dataset.chart] = {
    labels: rects.length, overlaps, ticks, empty, said,
    width: chart.querySelector('svg').getBoundingClientRect().width,
  };
}
document.body.setAttribute('data-check', JSON.stringify(out));
</script></body>"""


@pytest.fixture(scope="module")
def year_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _render(tmp_path_factory.mktemp("year"), _year, "400d")


def test_year_report_marks_partial_weeks_and_names_empty_series(year_report: Path) -> None:
    text = year_report.read_text()
    assert "Not drawn: completion acceptance % (no completions were shown)." in text
    assert "Hatched bars: weeks the window covers only in part" in text
    assert "(partial)</td>" in text
    assert text.count("xlabel-") <= 2 * 10  # at most ten week labels per chart (two charts)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_year_charts_in_chromium_have_no_overlapping_labels(year_report: Path, tmp_path: Path) -> None:
    """Defect 6: rendered by Chromium, week labels do not overlap, count axes have integer ticks, and a
    series left out is named in a visible message next to its chart."""
    assert CHROMIUM is not None
    page = tmp_path / "checked.html"
    page.write_text(year_report.read_text().replace("</body>", CHECK))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-check="([^"]+)"', dom.stdout)
    assert found, "the check script did not run"
    import html as html_mod
    import json

    charts = json.loads(html_mod.unescape(found.group(1)))["charts"]
    trends, deploys = charts["Weekly trends"], charts["Deployments to production per week"]
    for chart in (trends, deploys):
        assert 5 <= chart["labels"] <= 10 and chart["overlaps"] == 0, chart
        assert chart["ticks"] and all(t.lstrip("-").isdigit() for t in chart["ticks"]), chart["ticks"]
        assert chart["width"] > 300
    assert (
        trends["empty"] == ["completion acceptance %", "hook bypass %"] and trends["said"] == trends["empty"]
    )
    assert "Loop latency by phase" in charts


CHART_DIV = re.compile(r"<div class='chart' data-chart='([^']+)'[^>]*>(.*?)</div>", re.S)


def _report_cli(repo: Path, out: Path, since: str) -> subprocess.CompletedProcess[str]:
    """`ect report --format html` with `-X importtime`: stderr lists every module it imported."""
    env = {k: v for k, v in os.environ.items() if k != "ECT_METRICS_URL"}
    cmd = [sys.executable, "-X", "importtime", "-m", "ect", "report", "--since", since, "--format", "html"]
    res = subprocess.run(
        [*cmd, "--output", str(out)], cwd=repo, capture_output=True, text=True, env=env, timeout=180
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def _imported(stderr: str, module: str) -> bool:
    lines = (line for line in stderr.splitlines() if line.startswith("import time:"))
    return any(line.split("|")[-1].strip() == module for line in lines)


def test_unchanged_report_takes_its_charts_from_the_cache(html_report: Path) -> None:
    """The second HTML report over the same events never imports matplotlib and shows the same charts."""
    again = html_report.with_name("again.html")
    res = _report_cli(html_report.parent / "repo", again, "30d")
    assert _imported(res.stderr, "ect.metrics.html_report")  # the check can see what was imported
    assert not _imported(res.stderr, "matplotlib")
    first, second = CHART_DIV.findall(html_report.read_text()), CHART_DIV.findall(again.read_text())
    assert len(first) == 4 and second == first


def test_new_event_redraws_only_the_chart_it_changes(year_report: Path, tmp_path: Path) -> None:
    """One more deployment: matplotlib draws the deployments chart again (now one bar higher), the
    other charts come from the cache unchanged."""
    import json

    from ect.metrics.chart_cache import CHARTS_NAME

    repo = tmp_path / "repo"
    shutil.copytree(year_report.parent / "repo", repo)
    before = dict(CHART_DIV.findall(year_report.read_text()))
    kept = json.loads((repo / ".ect" / CHARTS_NAME).read_text())["entries"]
    assert len(kept) == len(before) == 3
    events.record(repo / ".ect", "promotion.done", ts=time.time() - 60, stage="production", commit_sha="new")
    out = tmp_path / "report.html"
    res = _report_cli(repo, out, "400d")
    assert _imported(res.stderr, "matplotlib")
    after = dict(CHART_DIV.findall(out.read_text()))
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["Deployments to production per week"]
    entries = json.loads((repo / ".ect" / CHARTS_NAME).read_text())["entries"]
    assert len(entries) == 4 and set(kept) < set(entries)  # one chart drawn and kept, three reused


def test_damaged_chart_cache_is_drawn_without_and_repaired(tmp_path: Path) -> None:
    """Garbage or a tampered chart: drawn again and the file written again; an unusable path: no
    cache, never an error."""
    import json
    from dataclasses import asdict

    from ect.metrics import html_report, report
    from ect.metrics.chart_cache import CHARTS_NAME
    from ect.metrics.store import SqliteStore

    state = tmp_path / ".ect"
    now = time.time()
    _history(state, now - 600)
    store = SqliteStore(state)
    try:
        r = report.build(store, now - 30 * 86400, now)
    finally:
        store.close()
    path = state / CHARTS_NAME
    path.write_text('{"salt": [[[')
    cache = html_report.chart_cache(state)
    drawn = html_report.charts(r, cache)
    assert len(drawn) == 4 and (cache.hits, cache.misses) == (0, 4)
    data = json.loads(path.read_text())  # written again, whole
    key = next(iter(data["entries"]))
    data["entries"][key]["chart"]["svg"] = "<svg>tampered</svg>"
    path.write_text(json.dumps(data))
    cache = html_report.chart_cache(state)
    assert html_report.charts(r, cache) == drawn and (cache.hits, cache.misses) == (3, 1)
    cache = html_report.chart_cache(state)
    assert html_report.charts(r, cache) == drawn and (cache.hits, cache.misses) == (4, 0)
    path.unlink()
    path.mkdir()  # neither readable nor writable as a file
    cache = html_report.chart_cache(state)
    key = cache.key("trends", ["figures"])
    assert cache.get(key) is None
    cache.put(key, asdict(drawn[0]))
    cache.save()  # no error
    assert path.is_dir() and html_report.chart_cache(state).get(key) is None
