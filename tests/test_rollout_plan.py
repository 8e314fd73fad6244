"""Rollout plans: parsing, strict validation (one-line errors), templates; alarm readings and the tracker;
commands with timeouts; Prometheus answers from a real local HTTP server."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ect.errors import ConfigError
from ect.rollout import alarms, commands
from ect.rollout.plan import Alarm, Context, argv, fill, parse_plan

BASE: dict[str, Any] = {
    "deploy": "deploy.sh {revision} {targets}",
    "rollback": "deploy.sh {previous} {targets}",
    "targets": [f"b{i}" for i in range(1, 11)],
    "prometheus": "http://127.0.0.1:9090",
    "waves": [
        {"name": "one-box", "targets": ["b1"], "bake_seconds": 60},
        {"name": "zone", "percent": 30, "bake_seconds": 120},
        {"name": "rest", "percent": 100},
    ],
    "alarms": [
        {"name": "errors", "query": 'sum(rate(e{v="{revision}"}[1m]))', "above": 0.01, "for_seconds": 30},
        {"name": "canary", "command": "probe {deployed}"},
    ],
}


def test_plan_parses_with_percent_waves_sliced_from_the_targets() -> None:
    plan = parse_plan("production", BASE)
    assert [w.name for w in plan.waves] == ["one-box", "zone", "rest"]
    assert plan.waves[1].targets == ("b2", "b3")  # 30% run it after the wave; b1 already did
    assert plan.waves[2].targets == tuple(f"b{i}" for i in range(4, 11))
    assert plan.alarms[0].kind == "prometheus" and plan.alarms[1].kind == "command"
    assert plan.deployed_targets(1) == ["b1", "b2", "b3"]
    weights = parse_plan("production", {**BASE, "targets": [], "waves": [{"percent": 5}, {"percent": 100}]})
    assert [(w.targets, w.percent) for w in weights.waves] == [((), 5.0), ((), 100.0)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"waves": []}, "needs at least one"),
        ({"colour": 1}, "unknown key 'stages.production.rollout.colour'"),
        ({"poll_seconds": 0}, "poll_seconds' must be a positive number"),
        ({"waves": [{"name": "a"}]}, "wave 'a' needs either 'targets' or 'percent'"),
        ({"waves": [{"percent": 50}, {"percent": 20}]}, "'percent' must grow"),
        (
            {"targets": ["b1"], "waves": [{"targets": ["b1"]}, {"name": "a", "percent": 50}]},
            "wave 'a' adds no target",
        ),
        ({"waves": [{"name": "a", "targets": ["x"]}, {"name": "a", "targets": ["y"]}]}, "same name"),
        ({"deploy": ""}, "has no deploy or rollback command"),
        ({"alarms": [{"name": "x", "query": "up"}]}, "needs a threshold"),
        ({"alarms": [{"name": "x"}]}, "needs either 'query'"),
        ({"alarms": [{"name": "x", "command": "a", "no_data": "maybe"}]}, "'no_data' must be one of"),
        ({"prometheus": ""}, "queries Prometheus: set"),
        ({"prometheus": "ftp://x"}, "must be an http(s):// URL"),
        ({"deploy": "deploy 'unterminated"}, "cannot parse command"),
        ({"waves": [{"targets": "b1"}]}, "must be list[str]"),
    ],
)
def test_bad_plans_are_one_line_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_plan("production", {**BASE, **change}, "pyproject.toml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_templates() -> None:
    ctx = Context("a" * 40, "b" * 40, "production", "zone", "30", ("b1", "b2"), ("b0", "b1", "b2"))
    assert argv("deploy.sh --rev={short} {targets} --all={deployed}", ctx) == [
        "deploy.sh",
        "--rev=" + "a" * 12,
        "b1",
        "b2",
        "--all=b0,b1,b2",
    ]
    # PromQL braces are left alone; values are escaped for string literals
    evil = Context('x"y', "", "p", "w", "", ("t.1",), ("t.1",))
    assert fill('m{v="{revision}",i=~"{deployed_regex}"}', evil, quote=True) == 'm{v="x\\"y",i=~"t\\\\.1"}'
    assert ctx.env()["ECT_ROLLOUT_TARGETS"] == "b1,b2"


def test_tracker_fires_after_for_seconds_and_holds_on_unknown() -> None:
    a = Alarm("errors", query="q", above=0.1, for_seconds=5)
    tracker = alarms.Tracker((a,))
    bad, ok, unknown = alarms.Reading("alarm", 0.5), alarms.Reading("ok", 0.0), alarms.Reading("unknown")
    assert tracker.update({"errors": bad}, now=100) == ([], False)
    assert tracker.update({"errors": bad}, now=104) == ([], False)
    assert tracker.update({"errors": bad}, now=105) == (["errors"], False)
    assert tracker.update({"errors": ok}, now=106) == ([], True)
    assert tracker.update({"errors": unknown}, now=107) == ([], False)
    assert tracker.unknown_since == 107
    tracker.update({"errors": unknown}, now=110)
    assert tracker.unknown_since == 107  # still held since 107
    tracker.update({"errors": ok}, now=111)
    assert tracker.unknown_since is None


class _Prom(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, Any]]] = {}

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlparse

        q = parse_qs(urlparse(self.path).query)["query"][0]
        code, body = self.answers.get(
            q, (200, {"status": "success", "data": {"resultType": "vector", "result": []}})
        )
        if q == "slow":
            time.sleep(2)
        raw = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except BrokenPipeError:  # the client gave up (the timeout case)
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def prom() -> Iterator[str]:
    def vector(*values: str) -> dict[str, Any]:
        result = [{"metric": {}, "value": [0, v]} for v in values]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}

    _Prom.answers = {
        "high": (200, vector("0.01", "0.3")),
        "low": (200, vector("0.01")),
        "nan": (200, vector("NaN")),
        "scalar": (200, {"status": "success", "data": {"resultType": "scalar", "result": [0, "7"]}}),
        "broken": (400, {"status": "error", "error": "parse error at char 3"}),
        "matrix": (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prom)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("query", "state", "detail"),
    [
        ("high", "alarm", ""),
        ("low", "ok", ""),
        ("nan", "unknown", "no data"),
        ("empty", "unknown", "no data"),
        ("scalar", "alarm", ""),
        ("broken", "unknown", "parse error at char 3"),
        ("matrix", "unknown", "not an instant vector"),
        ("slow", "unknown", "unreachable"),
    ],
)
def test_prometheus_readings(prom: str, tmp_path: Path, query: str, state: str, detail: str) -> None:
    ctx = Context("r", "", "p", "w", "", (), ())
    alarm = Alarm("a", query=query, above=0.1, timeout_seconds=0.5)
    reading = alarms.evaluate(alarm, ctx, prom, tmp_path, tmp_path / "log")
    assert reading.state == state and detail in reading.detail
    if query == "high":
        assert reading.value is not None and math.isclose(reading.value, 0.3)


def test_prometheus_down_is_unknown_and_no_data_can_be_ok(tmp_path: Path) -> None:
    ctx = Context("r", "", "p", "w", "", (), ())
    down = alarms.evaluate(
        Alarm("a", query="up", above=1), ctx, "http://127.0.0.1:9", tmp_path, tmp_path / "l"
    )
    assert down.state == "unknown" and "unreachable" in down.detail


def test_commands_time_out_and_keep_their_output(tmp_path: Path) -> None:
    code = "import sys, time; print('hello'); sys.stdout.flush(); time.sleep(30)"
    started = time.monotonic()
    result = commands.run([sys.executable, "-c", code], tmp_path, tmp_path / "c.log", timeout=1.0)
    assert result.timed_out and result.returncode is None and time.monotonic() - started < 10
    assert "hello" in result.tail and "hello" in (tmp_path / "c.log").read_text()
    missing = commands.run(["/nonexistent/deploy"], tmp_path, tmp_path / "m.log", timeout=1.0)
    assert missing.returncode is None and "cannot run" in missing.error
    probe = Alarm("p", command=f"{sys.executable} -c 'import sys; print(\"boom\"); sys.exit(3)'")
    reading = alarms.evaluate(probe, Context("r", "", "p", "w", "", (), ()), "", tmp_path, tmp_path / "p.log")
    assert reading.state == "alarm" and "probe exit 3: boom" in reading.detail
