"""End to end on real parts: a demo service deployed per wave as local processes, a real Prometheus
scraping them each second, the real `ect rollout` CLI. A good revision rolls through every wave;
a bad one (20% errors) trips the error-ratio alarm at the first wave and is rolled back by itself."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout_demo import PROMETHEUS, Demo, Load

from ect.events import query

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("prometheus") or os.path.exists(PROMETHEUS)),
        reason="needs the Debian package prometheus (installed by .ci/run)",
    ),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    d = Demo(tmp_path_factory.mktemp("rollout-e2e"), bake=1.0, poll=1.0)
    try:
        d.start_prometheus()
        yield d
    finally:
        d.close()


def _events(demo: Demo, rev: str) -> list[dict[str, object]]:
    return [
        e
        for e in query(demo.repo / ".ect")
        if str(e["kind"]).startswith("rollout.") and e.get("commit_sha") == rev
    ]


def test_good_then_bad_revision(demo: Demo) -> None:
    load = Load(demo.ports, rate=40, max_seconds=180).start()
    try:
        demo.pass_gate(demo.good)
        proc = demo.ect("rollout", demo.good)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "baking" in proc.stdout  # progress while a wave bakes
        assert set(demo.versions().values()) == {demo.good[:12]}
        kinds = [(e["kind"], e.get("wave")) for e in _events(demo, demo.good)]
        assert kinds == [
            ("rollout.wave_started", "one-box"),
            ("rollout.wave_passed", "one-box"),
            ("rollout.wave_started", "zone"),
            ("rollout.wave_passed", "zone"),
            ("rollout.wave_started", "rest"),
            ("rollout.wave_passed", "rest"),
            ("rollout.done", None),
        ]

        bad = demo.commit(5, "v2: fails one request in five")
        demo.pass_gate(bad)
        proc = demo.ect("rollout", bad)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "[one-box] ALARM error-ratio" in proc.stdout
        # every box serves the good revision again; the bad one never left the first box
        assert set(demo.versions().values()) == {demo.good[:12]}
        deploys = (demo.dir / "deploys.log").read_text().split("\n")
        assert {line.split()[1] for line in deploys if bad[:12] in line} == {"box-1"}
    finally:
        load.stop()
    assert load.errors[bad[:12]] > 0  # the load really saw the bad version's errors
    evs = _events(demo, bad)
    kinds = [(e["kind"], e.get("wave") or e.get("alarm")) for e in evs]
    assert kinds[:2] == [("rollout.wave_started", "one-box"), ("rollout.alarm", "one-box")]
    assert kinds[-1][0] == "rollout.rollback"
    alarm = next(e for e in evs if e["kind"] == "rollout.alarm")
    assert alarm["alarm"] == "error-ratio" and float(str(alarm["value"])) > 0.05
    rollback = evs[-1]
    assert rollback["outcome"] == "pass" and rollback["waves"] == ["one-box"]
    # the DORA `rollback` event for `ect report`
    dora = [e for e in query(demo.repo / ".ect", kind="rollback") if e.get("commit_sha") == bad]
    assert len(dora) == 1 and float(str(dora[0]["restored_ts"])) >= float(str(dora[0]["failed_ts"]))

    status = demo.ect("rollout", "status", "--json")
    assert status.returncode == 0
    state = json.loads(status.stdout)
    assert state["status"] == "rolled_back" and state["previous"] == demo.good
    assert [w["status"] for w in state["waves"]] == ["rolled_back", "pending", "pending"]
    assert state["waves"][0]["rollback"]["rc"] == 0
    assert Path(state["waves"][0]["deploy"]["log"]).read_text().count("box-1") >= 1  # output kept
