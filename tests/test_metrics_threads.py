"""Events recorded from several threads of one process (the LSP server does this) are all kept."""

from __future__ import annotations

import threading

from ect import events


def test_record_from_threads_keeps_every_event(tmp_path) -> None:
    state = tmp_path / ".ect"
    assert events.record(state, "completion.shown", chars=1)
    threads = [
        threading.Thread(target=events.record, args=(state, "completion.shown"), kwargs={"chars": i})
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(events.query(state, kind="completion.shown")) == 9
    assert not list(state.glob("events.db.corrupt-*"))
