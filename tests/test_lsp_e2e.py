"""`ect lsp` end to end: a real LSP client (pytest-lsp) drives the server process over stdio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from ect_testutil import EDITOR_SAMPLE, GIT_ENV

pytest_lsp = pytest.importorskip("pytest_lsp")
from lsprotocol import types as t  # noqa: E402

FILES = EDITOR_SAMPLE


async def _start(repo: Path, *args: str) -> pytest_lsp.LanguageClient:
    client = pytest_lsp.make_test_lsp_client()
    await client.start_io(
        sys.executable, "-m", "ect", "lsp", *args, cwd=str(repo), env={**os.environ, **GIT_ENV}
    )
    await client.initialize_session(
        t.InitializeParams(
            capabilities=pytest_lsp.client_capabilities("neovim"),
            root_uri=repo.as_uri(),
            workspace_folders=[t.WorkspaceFolder(uri=repo.as_uri(), name="repo")],
        )
    )
    return client


async def _complete(
    client: pytest_lsp.LanguageClient, uri: str, line: int, col: int
) -> list[t.CompletionItem]:
    deadline = time.monotonic() + 30
    while True:  # the index is built in the background right after initialize
        result = await client.text_document_completion_async(
            t.CompletionParams(
                text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line=line, character=col)
            )
        )
        items = result.items if isinstance(result, t.CompletionList) else (result or [])
        if items or time.monotonic() > deadline:
            return list(items)
        await asyncio.sleep(0.2)


async def _diagnostics(client: pytest_lsp.LanguageClient, uri: str, want_some: bool) -> list[t.Diagnostic]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        diags = list(client.diagnostics.get(uri, []))
        if bool(diags) == want_some and (want_some or uri in client.diagnostics):
            return diags
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(client.wait_for_notification(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS), 5)
    raise AssertionError(
        f"no {'non-empty' if want_some else 'empty'} diagnostics for {uri}: {client.diagnostics}"
    )


def _save(client: pytest_lsp.LanguageClient, path: Path, uri: str, text: str, version: int) -> None:
    path.write_text(text)
    client.text_document_did_change(
        t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
    client.text_document_did_save(
        t.DidSaveTextDocumentParams(text_document=t.TextDocumentIdentifier(uri=uri))
    )


def _apply(text: str, edits: list[t.TextEdit]) -> str:
    lines = text.splitlines(True)
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        assert e.range.start.character == 0 and e.range.end.character == 0
        lines[e.range.start.line : e.range.end.line] = [e.new_text] if e.new_text else []
    return "".join(lines)


@pytest.mark.asyncio
async def test_completion_diagnostics_and_verified_fix_over_stdio(make_repo) -> None:
    repo = make_repo(FILES)
    util = repo / "acme/util.py"
    uri = util.as_uri()
    client = await _start(repo)
    try:
        text = util.read_text()
        stray = (repo / "acme/new.py").as_uri()  # `:w new.py` from an unnamed buffer: never opened
        client.text_document_did_change(
            t.DidChangeTextDocumentParams(
                text_document=t.VersionedTextDocumentIdentifier(uri=stray, version=3),
                content_changes=[t.TextDocumentContentChangeWholeDocument(text="x = 1\n")],
            )
        )
        client.text_document_did_open(
            t.DidOpenTextDocumentParams(
                t.TextDocumentItem(uri=uri, language_id="python", version=1, text=text + "\ncore.\n")
            )
        )
        items = await _complete(client, uri, text.count("\n") + 1, len("core."))
        assert [i.label for i in items[:2]] == ["add", "scale"], items  # internal members of acme.core
        assert items[0].detail == "def add(a, b)" and items[0].documentation == "Sum of two numbers."
        assert items[0].command is not None  # accepting the item tells the server (telemetry)
        await client.workspace_execute_command_async(
            t.ExecuteCommandParams(command=items[0].command.command, arguments=items[0].command.arguments)
        )
        client.text_document_did_change(
            t.DidChangeTextDocumentParams(
                text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[t.TextDocumentContentChangeWholeDocument(text=text + "\ncore.sc\n")],
            )
        )
        inline = await client.text_document_inline_completion_async(
            t.InlineCompletionParams(
                text_document=t.TextDocumentIdentifier(uri=uri),
                position=t.Position(line=text.count("\n") + 1, character=len("core.sc")),
                context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked),
            )
        )
        assert inline is not None
        inline_items = inline.items if isinstance(inline, t.InlineCompletionList) else inline
        assert [i.insert_text for i in inline_items] == ["ale"]  # the rest of `scale` (no model trained)

        broken = text.replace("from acme.core import add\n", "")
        _save(client, util, uri, broken, 3)
        diags = await _diagnostics(client, uri, want_some=True)
        [diag] = [d for d in diags if "add" in d.message]
        assert diag.message.startswith("name 'add' is not defined")
        assert diag.range.start.line == broken.splitlines().index("        t = add(t, x)")
        assert diag.source == "ect:test"

        actions = await client.text_document_code_action_async(
            t.CodeActionParams(
                text_document=t.TextDocumentIdentifier(uri=uri),
                range=diag.range,
                context=t.CodeActionContext(diagnostics=[diag]),
            )
        )
        assert actions, "no code action"
        again = await client.text_document_code_action_async(  # the editor asks again (cursor moved)
            t.CodeActionParams(
                text_document=t.TextDocumentIdentifier(uri=uri),
                range=diag.range,
                context=t.CodeActionContext(diagnostics=[diag]),
            )
        )
        assert again is not None and len(again) == len(actions)
        best = actions[0]
        assert isinstance(best, t.CodeAction)
        assert best.title == "ect: Add `from acme.core import add` (verified)"
        assert best.is_preferred
        assert best.edit is not None and best.edit.changes is not None
        fixed = _apply(broken, list(best.edit.changes[uri]))
        assert "from acme.core import add" in fixed

        _save(client, util, uri, fixed, 4)
        assert await _diagnostics(client, uri, want_some=False) == []
        assert not [m.message for m in client.messages if m.type == t.MessageType.Error]  # no KeyError
    finally:
        await client.shutdown_session()
        await client.stop()
    with sqlite3.connect(repo / ".ect" / "events.db") as conn:
        kinds = {k for (k,) in conn.execute("SELECT kind FROM events")}
        accepted = conn.execute(
            "SELECT chars, data FROM events WHERE kind = 'completion.accepted'"
        ).fetchall()
        counts = dict(conn.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall())
    # (fails while ect.events shares one SQLite connection between threads: the server records from several)
    assert {"completion.shown", "completion.accepted", "fix.offered", "fix.applied", "loop.run"} <= kinds
    assert len(accepted) == 1 and accepted[0][0] == 3 and '"label": "add"' in accepted[0][1]
    # what a person saw: the list with items and the ghost text (not the empty lists while indexing);
    # each verified fix offered once although the editor asked for code actions twice
    assert counts["completion.shown"] == 2, counts
    assert counts["fix.offered"] == len(actions) and counts["fix.applied"] == 1, counts


@pytest.mark.asyncio
async def test_bad_config_is_reported_to_the_editor_not_a_crash(make_repo) -> None:
    files = dict(FILES)
    files["pyproject.toml"] = FILES["pyproject.toml"] + "        [tool.ect.lsp]\n        colour = true\n"
    repo = make_repo(files)
    client = await _start(repo)
    try:
        deadline = time.monotonic() + 30
        while not client.messages and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert [m.message for m in client.messages] == [
            "ect: pyproject.toml [tool.ect]: unknown key 'lsp.colour' (known: diagnostics, fixes, model)"
        ]
        uri = (repo / "acme/util.py").as_uri()
        result = await client.text_document_completion_async(
            t.CompletionParams(text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(0, 0))
        )
        assert result is not None and not (result.items if isinstance(result, t.CompletionList) else result)
    finally:
        await client.shutdown_session()
        await client.stop()


def _model_items(result: t.CompletionList | list[t.CompletionItem] | None) -> list[t.CompletionItem]:
    items = result.items if isinstance(result, t.CompletionList) else (result or [])
    return [i for i in items if (i.detail or "").startswith("ect model")]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_team_model_published_while_the_server_runs_reaches_the_list_on_a_re_request(
    make_repo, tmp_path: Path
) -> None:
    """No model at first (index items, a complete list); a model is trained elsewhere and published to
    the team directory; the server picks it up and, as the client asks again while typing (the list
    says it is incomplete meanwhile), a model item arrives next to the index items."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import textwrap

    from ect_testutil import git, make_tiny_base, run_ect

    team = tmp_path / "team"
    files = dict(FILES)
    files["pyproject.toml"] = (
        FILES["pyproject.toml"] + f'        [tool.ect.model]\n        team_dir = "{team}"\n'
    )
    repo = make_repo(files)
    util = repo / "acme/util.py"
    uri = util.as_uri()
    text = util.read_text() + "\ncore.\n"
    line, col = text.count("\n") - 1, len("core.")
    client = await _start(repo)
    try:
        client.text_document_did_open(
            t.DidOpenTextDocumentParams(
                t.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        items = await _complete(client, uri, line, col)
        assert [i.label for i in items] == ["add", "scale"], items  # no model yet: the index alone

        clone = tmp_path / "clone"  # a teammate's checkout of the same commit trains and publishes
        git(tmp_path, "clone", "-q", str(repo), str(clone))
        base = make_tiny_base(tmp_path / "base", [textwrap.dedent(v) for v in FILES.values()])
        trained = run_ect(clone, "model", "train", "--base", str(base), "--max-steps", "1", timeout=300)
        assert trained.returncode == 0, trained.stderr
        published = run_ect(clone, "model", "publish")
        assert published.returncode == 0 and str(team) in published.stdout, published.stderr

        seen: list[tuple[bool, int, int]] = []  # (incomplete, index items, model items) per response
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the client asks again as the user types
            result = await client.text_document_completion_async(
                t.CompletionParams(
                    text_document=t.TextDocumentIdentifier(uri=uri),
                    position=t.Position(line=line, character=col),
                )
            )
            assert isinstance(result, t.CompletionList)
            model = _model_items(result)
            seen.append((result.is_incomplete, len(result.items) - len(model), len(model)))
            if model:
                break
            await asyncio.sleep(0.3)
        assert seen and seen[-1][2] == 1, seen
        # before the model item: lists with the index items at once, marked incomplete (ask again)
        assert any(incomplete and n_index == 2 and not n_model for incomplete, n_index, n_model in seen), seen
        assert all(n_index == 2 for _, n_index, _ in seen), seen
        [item] = model
        assert item.detail is not None and item.detail.startswith("ect model (team "), item.detail
        assert item.text_edit is not None and isinstance(item.text_edit, t.TextEdit)
        assert item.text_edit.new_text.startswith(("add", "scale")), item  # a real member of acme.core
        assert item.text_edit.range.start == t.Position(line=line, character=col)
    finally:
        await client.shutdown_session()
        await client.stop()


def _log_figures(log: Path) -> tuple[list[str], list[str]]:
    """(numbers of the models the server loaded, numbers of the models fix candidates came from)."""
    import re

    text = log.read_text(errors="replace") if log.exists() else ""
    loads = re.findall(r"loading code model #(\d+)", text)
    used = re.findall(r"fix candidate for \S+ from code model #(\d+)", text)
    return loads, used


async def _model_item(
    client: pytest_lsp.LanguageClient, uri: str, line: int, col: int, log: Path, n: int
) -> None:
    """Ask for completions (as typing does) until model #n is loaded and its item is in the list."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        result = await client.text_document_completion_async(
            t.CompletionParams(
                text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line=line, character=col)
            )
        )
        if _model_items(result) and log.read_text(errors="replace").count(" loaded from ") >= n:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"model #{n} never answered: {log.read_text(errors='replace')[-3000:]}")


async def _fix_offered(
    client: pytest_lsp.LanguageClient, path: Path, uri: str, text: str, version: int
) -> None:
    """Save `text` (a misspelled call) and wait for its verified fixes (the fix engine asked the model)."""
    _save(client, path, uri, text, version)
    diags = [d for d in await _diagnostics(client, uri, want_some=True) if isinstance(d.data, dict)]
    assert diags, client.diagnostics
    actions = await client.text_document_code_action_async(
        t.CodeActionParams(
            text_document=t.TextDocumentIdentifier(uri=uri),
            range=diags[0].range,
            context=t.CodeActionContext(diagnostics=diags),
        )
    )
    assert actions, "no verified fix for the misspelled call"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_fixes_ask_the_model_that_serves_completions_one_copy_replaced_when_retrained(
    make_repo, tmp_path: Path
) -> None:
    """The fix engine asks the very model the server loaded for completions (the server's log numbers
    every model it loads and names the one each fix candidate came from): one load for both; a
    retrained model is loaded once more and then serves both."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import textwrap

    from ect_testutil import git, make_tiny_base, run_ect

    repo = make_repo(FILES)
    base = make_tiny_base(tmp_path / "base", [textwrap.dedent(v) for v in FILES.values()])
    trained = run_ect(repo, "model", "train", "--base", str(base), "--max-steps", "1", timeout=300)
    assert trained.returncode == 0, trained.stderr
    log = tmp_path / "lsp.log"
    user = repo / "acme/user.py"
    user.write_text("from acme import core\n")
    text = "from acme import core\ncore.\n"
    util = repo / "acme/util.py"
    original = util.read_text()
    broken = original.replace("t = add(t, x)", "t = ad(t, x)")
    client = await _start(repo, "--log-file", str(log))
    try:
        client.text_document_did_open(
            t.DidOpenTextDocumentParams(t.TextDocumentItem(user.as_uri(), "python", 1, text))
        )
        client.text_document_did_open(
            t.DidOpenTextDocumentParams(t.TextDocumentItem(util.as_uri(), "python", 1, original))
        )
        await _model_item(client, user.as_uri(), 1, len("core."), log, 1)
        await _fix_offered(client, util, util.as_uri(), broken, 2)
        loads, used = _log_figures(log)
        assert loads == ["1"], log.read_text()  # completions and fixes: one model loaded
        assert used and set(used) == {"1"}, log.read_text()

        _save(client, util, util.as_uri(), original, 3)
        await _diagnostics(client, util.as_uri(), want_some=False)
        core = repo / "acme/core.py"  # new code: the model is retrained on it
        core.write_text(core.read_text() + "\n\ndef mul(a, b):\n    return a * b\n")
        git(repo, "commit", "-qam", "mul")
        again = run_ect(repo, "model", "train", "--base", str(base), "--max-steps", "1", timeout=300)
        assert again.returncode == 0, again.stderr
        await _model_item(client, user.as_uri(), 1, len("core."), log, 2)
        await _fix_offered(client, util, util.as_uri(), broken, 4)
        loads, used = _log_figures(log)
        assert loads == ["1", "2"], log.read_text()  # the retrained model, loaded once, for both
        assert used[-1] == "2" and set(used) == {"1", "2"}, log.read_text()
    finally:
        util.write_text(original)
        await client.shutdown_session()
        await client.stop()
