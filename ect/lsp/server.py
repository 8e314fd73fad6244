"""`ect lsp`: the language server over stdio (pygls 2.x).

- completion / inlineCompletion: internal members from the symbol index at once, plus the code model's
  validated completion when a model is trained: computed in the background (the list says it is
  incomplete meanwhile), reloaded when the model is retrained;
- diagnostics on save: the loop for that file in the background (compile + affected tests) under the
  test timeout, with work-done progress; a newer save cancels an older run;
- positions in the encoding the client negotiated (utf-8, utf-16 or utf-32);
- nothing outlives the server: shutdown, exit, end of input, the editor's death (processId) or a signal
  stop the warm pytest process and its tests;
- codeAction: the verified fixes for the diagnostics under the cursor;
- telemetry: completion.shown / accepted / dismissed, fix.offered / applied in the event log.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ect.errors import EctError

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from ect.fix.engine import Fix, FixResult
    from ect.lsp.diagnose import Run

ACCEPT = "ect.completionAccepted"
KINDS = {"module": 9, "class": 7, "function": 3, "method": 2, "variable": 6}  # lsprotocol CompletionItemKind
_WORD_END = re.compile(r"\w*$")
MAX_ITEMS = 50  # completion items per list (more: the list is incomplete)


def word_before(doc: str, line: int, col: int) -> str:
    """The part of a word typed before (line, col), 0-based code points: what an item must replace."""
    from ect.lsp.positions import line_at

    return _WORD_END.search(line_at(doc, line)[:col]).group(0)  # type: ignore[union-attr]


def save_timeout(cfg: Any, fallback: float) -> float:
    """The configured test timeout in seconds (`test_timeout` in [tool.ect]), else `fallback`."""
    for name in ("test_timeout", "test_timeout_s"):
        value = getattr(cfg, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return fallback


class Raw:
    """A result that is JSON already: pygls sends it as it is (building and converting lsprotocol objects
    cost more than the whole index lookup for a 50-item list)."""

    __slots__ = ("value",)

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value


def _accept(shown_id: int, chars: int, label: str) -> dict[str, Any]:
    """The command an accepted completion item runs (telemetry)."""
    return {
        "title": "accept",
        "command": ACCEPT,
        "arguments": [{"id": shown_id, "chars": chars, "label": label}],
    }


def _converter() -> Any:
    """pygls's converter, passing `Raw` results through untouched."""
    from pygls.protocol import default_converter

    converter = default_converter()  # type: ignore[no-untyped-call]
    converter.register_unstructure_hook(Raw, lambda raw: raw.value)
    return converter


class Session:
    """Per-workspace state: config, symbol index, fix engine, diagnostics worker, model, telemetry."""

    def __init__(self, server: LanguageServer, folder: Path) -> None:
        from ect.config import load_config
        from ect.errors import NotARepoError
        from ect.fix.engine import FixEngine
        from ect.fix.warm_pytest import WarmPytest
        from ect.lsp.diagnose import Diagnoser
        from ect.lsp.indexer import Indexer
        from ect.lsp.model_bridge import ModelBridge
        from ect.lsp.positions import normalize
        from ect.lsp.settings import load_settings as load_lsp_settings
        from ect.lsp.telemetry import Telemetry
        from ect.repo import find_root

        try:
            self.root = find_root(folder)
        except NotARepoError:
            self.root = folder.resolve()
        self.server = server
        self.cfg = load_config(self.root)
        self.settings = load_lsp_settings(self.cfg)
        self.engine = FixEngine(self.root, self.cfg)
        self.telemetry = Telemetry(self.cfg.state_path, self.root.name)
        self.model = ModelBridge(self.cfg, lambda: self.engine.current_index)
        if self.settings.model:  # fixes use the completions' model: one copy in memory
            self.engine.model_source = self.model.shared
        self.encoding = normalize(server.workspace.position_encoding)
        self.published: set[str] = set()
        self.offered: dict[str, list[tuple[FixResult, Fix]]] = {}
        self.recorded_offers: set[tuple[int, str]] = set()  # (id of the FixResult, fix title)
        self.seq: dict[str, int] = {}
        self.ready = threading.Event()
        self.closed = False
        self.warm = WarmPytest(self.root, self.cfg)
        self.engine.use_warm_pytest(self.warm)  # loop runs and verification go through the warm process
        self.timeout_s = save_timeout(self.cfg, self.engine.settings.test_timeout_s)
        self.indexer = Indexer(self.engine)
        self.diagnoser = Diagnoser(
            self.engine,
            self.publish,
            fixes=self.settings.fixes,
            warm=self.warm,
            timeout_s=self.timeout_s,
            progress=self.progress,
            refresh_index=self.indexer.request,
        )
        self._tokens = itertools.count(1)
        self._progress: dict[int, str] = {}
        self._rels: dict[str, str | None] = {}  # uri -> repo-relative path (resolved once)
        self._completers: dict[str, Any] = {}  # rel -> Completer over the current index
        threading.Thread(target=self._warm, name="ect-warm", daemon=True).start()

    def _warm(self) -> None:
        self.indexer.start()  # completions as soon as the (bounded) first index exists
        try:
            self.warm.start()
        finally:
            self.ready.set()
        self.indexer.first.wait(600)
        if self.settings.model and not self.closed:
            self.model.warm(self.engine.current_index)

    def close(self) -> None:
        """Stop everything this session started (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.indexer.stop()
        self.diagnoser.stop()
        self.model.close()
        self.telemetry.close()

    def progress(self, phase: str, run: Run) -> None:
        """`$/progress` work-done begin/end for a save run (when the client supports it)."""
        from lsprotocol import types as t

        caps = self.server.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress) or self.closed:
            return
        if phase == "begin":
            token = f"ect-save-{next(self._tokens)}"
            try:
                self.server.work_done_progress.create(token).result(timeout=2)
            except Exception:
                return
            self._progress[run.generation] = token
            self.server.work_done_progress.begin(
                token,
                t.WorkDoneProgressBegin(
                    title="ect", message=f"testing {run.path} (limit {self.timeout_s:g} s)", cancellable=False
                ),
            )
        elif run.generation in self._progress:
            token = self._progress.pop(run.generation)
            done = "cancelled" if run.cancelled else f"{len(run.problems)} problem(s)"
            self.server.work_done_progress.end(token, t.WorkDoneProgressEnd(message=done))

    def text_of(self, uri: str) -> str:
        """The open buffer of `uri`, else the file on disk (up to 16 MB), else ''."""
        from urllib.parse import unquote

        doc = self.server.workspace.text_documents.get(unquote(uri))
        if doc is not None:
            return str(doc.source)
        from pygls.uris import to_fs_path

        fs = to_fs_path(uri)
        try:
            with open(fs or "", encoding="utf-8", errors="replace") as fh:
                return fh.read(16 * 1024 * 1024)
        except OSError:
            return ""

    def position(self, text: str, line: int, col: int) -> Any:
        """The client Position of (0-based line, 0-based code-point column) in `text`."""
        from lsprotocol import types as t

        from ect.lsp.positions import line_at, to_units

        return t.Position(line=line, character=to_units(line_at(text, line), col, self.encoding))

    def rel(self, uri: str) -> str | None:
        """The repository-relative path of `uri` (None: outside the repository); resolved once per uri."""
        if uri in self._rels:
            return self._rels[uri]
        from pygls.uris import to_fs_path

        fs = to_fs_path(uri)
        rel: str | None = None
        if fs is not None:
            with contextlib.suppress(ValueError, OSError):
                rel = Path(fs).resolve().relative_to(self.root).as_posix()
        if len(self._rels) >= 4096:
            self._rels.clear()
        self._rels[uri] = rel
        return rel

    def uri(self, rel: str) -> str:
        return (self.root / rel).as_uri()

    def _range(self, texts: dict[str, str], path: str, line: int, col: int) -> Any:
        """The range from (1-based line, 1-based code-point column) to the end of that line."""
        from lsprotocol import types as t

        from ect.lsp.positions import line_at

        uri = self.uri(path)
        if uri not in texts:
            texts[uri] = self.text_of(uri)
        text, ln = texts[uri], max(line - 1, 0)
        end = len(line_at(text, ln))
        return t.Range(self.position(text, ln, min(max(col - 1, 0), end)), self.position(text, ln, end))

    def publish(self, run: Run) -> None:
        from lsprotocol import types as t

        if self.closed:
            return
        texts: dict[str, str] = {}
        by_uri: dict[str, list[t.Diagnostic]] = {}
        for p in run.problems:
            sev = t.DiagnosticSeverity.Warning if p.severity == "warning" else t.DiagnosticSeverity.Error
            related = [
                t.DiagnosticRelatedInformation(
                    t.Location(self.uri(path), self._range(texts, path, line, 1)), message
                )
                for path, line, message in p.related
            ]
            by_uri.setdefault(self.uri(p.path), []).append(
                t.Diagnostic(
                    self._range(texts, p.path, p.line, p.col),
                    p.message,
                    severity=sev,
                    source=p.source,
                    data={"key": p.key} if p.key else None,
                    related_information=related or None,
                )
            )
        for uri in (self.published | {self.uri(run.path)}) - set(by_uri):
            by_uri[uri] = []  # clear old problems; the saved file always gets an answer
        self.published = {u for u, d in by_uri.items() if d}
        for uri, diags in by_uri.items():
            self.server.text_document_publish_diagnostics(
                t.PublishDiagnosticsParams(uri=uri, diagnostics=diags)
            )

    def record_offer(self, res: FixResult, fix: Fix) -> None:
        """`fix.offered` once per verified fix shown, however often the editor asks for code actions."""
        key = (id(res), fix.title)
        if key not in self.recorded_offers:
            self.recorded_offers.add(key)
            self.engine.record("fix.offered", res, fix, source="lsp")

    def completer(self, rel: str) -> Any:
        """The index completer of `rel` (kept while the index stays the same: its ranked members too)."""
        from ect.lsp.completion import Completer
        from ect.models.index import module_name_for

        index = self.engine.current_index
        if index is None:
            return None
        kept = self._completers.get(rel)
        if kept is not None and kept.index is index:
            return kept
        if len(self._completers) >= 64:
            self._completers.clear()
        made = Completer(index, module_name_for(self.root / rel, self.root), rel.endswith("__init__.py"))
        self._completers[rel] = made
        return made


def build_server() -> LanguageServer:
    from lsprotocol import types as t
    from pygls.lsp.server import LanguageServer

    from ect import __version__

    server = LanguageServer("ect", __version__, converter_factory=_converter)
    state: dict[str, Session] = {}
    folders: dict[str, Path] = {}

    def session() -> Session | None:
        return state.get("s")

    @server.feature(t.INITIALIZE)
    def initialize(ls: LanguageServer, params: t.InitializeParams) -> None:
        from pygls.uris import to_fs_path

        folder = Path.cwd()
        if params.workspace_folders:
            folder = Path(to_fs_path(params.workspace_folders[0].uri) or folder)
        elif params.root_uri:
            folder = Path(to_fs_path(params.root_uri) or folder)
        elif params.root_path:
            folder = Path(params.root_path)
        _tolerate_unopened_changes(ls)
        if params.process_id:
            _watch_editor(params.process_id, lambda: _quit(state))
        folders["root"] = folder
        try:
            state["s"] = Session(ls, folder)
        except EctError as exc:
            ls.window_show_message(t.ShowMessageParams(t.MessageType.Error, f"ect: {exc}"))

    def _reload_config(ls: LanguageServer, uri: str) -> bool:
        """A saved pyproject.toml / ect.toml at the root: a new session when [tool.ect] changed (or an
        error message, keeping the old session). False when `uri` is not the config file."""
        from pygls.uris import to_fs_path

        from ect.config import load_config
        from ect.repo import find_root

        folder = folders.get("root")
        fs = to_fs_path(uri)
        if folder is None or fs is None or Path(fs).name not in ("pyproject.toml", "ect.toml"):
            return False
        old = session()
        try:
            root = old.root if old is not None else find_root(folder)
        except EctError:
            root = folder.resolve()
        if Path(fs).resolve().parent != root:
            return False
        try:
            cfg = load_config(root)
            if old is not None and cfg == old.cfg:
                return False  # nothing of ect's changed: an ordinary save
            if old is not None:
                old.close()
                state.pop("s", None)
            state["s"] = Session(ls, root)
        except EctError as exc:
            ls.window_show_message(t.ShowMessageParams(t.MessageType.Error, f"ect: {exc}"))
            return True
        ls.window_log_message(t.LogMessageParams(t.MessageType.Info, "ect: configuration reloaded"))
        return True

    @server.feature(t.TEXT_DOCUMENT_DID_SAVE, t.SaveOptions(include_text=False))
    def did_save(ls: LanguageServer, params: t.DidSaveTextDocumentParams) -> None:
        if _reload_config(ls, params.text_document.uri):
            return
        s = session()
        rel = s.rel(params.text_document.uri) if s else None
        if (
            s is not None
            and not s.closed
            and s.settings.diagnostics
            and rel is not None
            and (rel.endswith(".py") or rel.endswith(".toml"))
        ):
            _check_applied(s, params.text_document.uri)
            s.offered.pop(rel, None)
            s.diagnoser.schedule(rel)

    def ls_doc(uri: str) -> str:
        return str(server.workspace.get_text_document(uri).source)

    def _cursor(s: Session, doc: str, pos: t.Position) -> tuple[str, int]:
        """The cursor's line and its code-point column."""
        from ect.lsp.positions import line_at, to_index

        text = line_at(doc, pos.line)
        return text, to_index(text, pos.character, s.encoding)

    def _index_items(s: Session, rel: str, doc: str, line: int, col: int) -> list[Any]:
        completer = s.completer(rel)
        return [] if completer is None else list(completer.complete(doc, line, col))

    def _module(s: Session, rel: str) -> str:
        from ect.models.index import module_name_for

        completer = s.completer(rel)
        return completer.module if completer is not None else module_name_for(s.root / rel, s.root)

    @server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=["."]))
    def completion(ls: LanguageServer, params: t.CompletionParams) -> Any:
        """The index items at once (the list as JSON-ready dicts: see `Raw`), and the model's item when
        it was computed in the background for this point of the typing. Answered on the server's own
        thread (nothing here waits: a thread pool's hand-over cost more than the work on a busy machine)."""
        from ect.lsp.positions import offset_of

        s = session()
        uri = params.text_document.uri
        rel = s.rel(uri) if s else None
        if s is None or rel is None or s.closed:
            return Raw({"isIncomplete": False, "items": []})
        pos = params.position
        doc = ls_doc(uri)
        text, col = _cursor(s, doc, pos)
        completer = s.completer(rel)
        found, total = ([], 0) if completer is None else completer.complete_top(doc, pos.line, col, MAX_ITEMS)
        head = text[:col]
        model_text: str | None = None
        pending = False
        if s.settings.model:
            s.model.refresh()
            got = s.model.suggestion(uri, pos.line, head)
            if got is not None:
                model_text = got.text
            else:  # computed in the background: the client asks again as the user types
                pending = s.model.pending or s.model.request(
                    uri, _module(s, rel), doc, offset_of(doc, pos.line, col), pos.line, head
                )
        items: list[dict[str, Any]] = []
        shown_id = 0
        if found or model_text:
            shown_id = s.telemetry.shown(
                uri,
                "model" if model_text else "index",
                s.model.name,
                total + bool(model_text),
                sum(len(i.remainder) for i in found[:1]),
            )
        if model_text:
            # the item replaces the word being typed (clients filter and replace by it): it carries the word
            typed = word_before(doc, pos.line, col)
            whole = typed + model_text
            label = whole.splitlines()[0][:60] or whole[:60]
            start = s.position(doc, pos.line, col - len(typed))
            items.append(
                {
                    "label": label,
                    "kind": int(t.CompletionItemKind.Snippet),
                    "detail": f"ect model ({s.model.name})",
                    "filterText": whole,
                    "textEdit": {
                        "range": {
                            "start": {"line": start.line, "character": start.character},
                            "end": {"line": pos.line, "character": pos.character},
                        },
                        "newText": whole,
                    },
                    "sortText": "0000",
                    "command": _accept(shown_id, len(model_text), label),
                }
            )
        for rank, it in enumerate(found):
            item: dict[str, Any] = {"label": it.label, "kind": KINDS.get(it.kind, 6), "detail": it.detail}
            if it.doc:
                item["documentation"] = it.doc
            item["sortText"] = f"{rank + 1:04d}"
            item["filterText"] = it.label
            item["command"] = _accept(shown_id, len(it.remainder), it.label)
            items.append(item)
        # more than MAX_ITEMS: the client asks again as the user types (a shorter, faster list)
        return Raw({"isIncomplete": pending or total > MAX_ITEMS, "items": items})

    @server.feature(t.TEXT_DOCUMENT_INLINE_COMPLETION, t.InlineCompletionOptions())
    @server.thread()
    def inline_completion(ls: LanguageServer, params: t.InlineCompletionParams) -> t.InlineCompletionList:
        from ect.lsp.positions import offset_of

        s = session()
        uri = params.text_document.uri
        rel = s.rel(uri) if s else None
        if s is None or rel is None or s.closed:
            return t.InlineCompletionList(items=[])
        pos = params.position
        doc = ls_doc(uri)
        _, col = _cursor(s, doc, pos)
        found = _index_items(s, rel, doc, pos.line, col)
        text: str | None = None
        if s.settings.model:
            s.model.refresh()
            got = s.model.suggestion(uri, pos.line, _cursor(s, doc, pos)[0][:col])
            text = got.text if got is not None else None
        if text is None and s.settings.model and s.model.engine is not None:  # ghost text may wait
            s.seq[uri] = my = s.seq.get(uri, 0) + 1
            text = s.model.complete(
                _module(s, rel), doc, offset_of(doc, pos.line, col), lambda: s.seq.get(uri) != my
            )
        origin = "model"
        if text is None and found and found[0].remainder:
            text, origin = found[0].remainder, "index"
        if not text:
            return t.InlineCompletionList(items=[])
        shown_id = s.telemetry.shown(uri, origin, s.model.name, 1, len(text))
        return t.InlineCompletionList(
            items=[
                t.InlineCompletionItem(
                    insert_text=text,
                    range=t.Range(pos, pos),
                    command=t.Command(
                        title="accept",
                        command=ACCEPT,
                        arguments=[{"id": shown_id, "chars": len(text), "label": text[:60]}],
                    ),
                )
            ]
        )

    @server.command(ACCEPT)
    def accepted(ls: Any, *args: Any) -> None:  # `Any`: pygls resolves command annotations at runtime
        s = session()
        payload = _payload(args)
        if s is not None and payload:
            s.telemetry.accepted(
                int(payload.get("id", 0)), int(payload.get("chars", 0)), str(payload.get("label", ""))
            )

    @server.feature(
        t.TEXT_DOCUMENT_CODE_ACTION, t.CodeActionOptions(code_action_kinds=[t.CodeActionKind.QuickFix])
    )
    @server.thread()
    def code_action(ls: LanguageServer, params: t.CodeActionParams) -> list[t.CodeAction]:
        from ect.lsp.edits import line_edits

        s = session()
        uri = params.text_document.uri
        if s is None:
            return []
        doc = ls_doc(uri)
        actions: list[t.CodeAction] = []
        for diag in params.context.diagnostics:
            key = diag.data.get("key") if isinstance(diag.data, dict) else None
            if not key:
                continue
            res = s.diagnoser.fixes_for(str(key))
            if res is None or not res.fixes:
                continue
            for rank, fx in enumerate(res.fixes):
                if s.uri(fx.path) != uri or fx.old_text != doc:
                    continue  # the buffer changed since the fix was verified
                edits = [
                    t.TextEdit(t.Range(t.Position(a, 0), t.Position(b, 0)), text)
                    for a, b, text in line_edits(fx.old_text, fx.new_text)
                ]
                actions.append(
                    t.CodeAction(
                        title=f"ect: {fx.title} (verified)",
                        kind=t.CodeActionKind.QuickFix,
                        diagnostics=[diag],
                        is_preferred=rank == 0,
                        edit=t.WorkspaceEdit(changes={uri: edits}),
                    )
                )
                pending = s.offered.setdefault(fx.path, [])
                if all(fx is not f for _, f in pending):
                    pending.append((res, fx))
                s.record_offer(res, fx)
        return actions

    def _check_applied(s: Session, uri: str) -> None:
        """A code action was applied when the buffer becomes exactly the text of an offered fix."""
        rel = s.rel(uri)
        pending = s.offered.get(rel or "")
        if not pending:
            return
        doc = ls_doc(uri)
        for res, fx in pending:
            if fx.new_text == doc:
                s.engine.record("fix.applied", res, fx, source="lsp")
                s.offered.pop(rel or "", None)
                return

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: t.DidChangeTextDocumentParams) -> None:
        s = session()
        if s is not None and s.offered:
            _check_applied(s, params.text_document.uri)

    @server.feature(t.SHUTDOWN)
    def shutdown(ls: LanguageServer, params: None) -> None:
        s = session()
        if s is not None:
            s.close()

    @server.feature(t.EXIT)
    def exit_(ls: LanguageServer, params: None) -> None:
        _quit(state, exit_now=False)

    server.ect_state = state  # type: ignore[attr-defined]
    return server


def _quit(state: dict[str, Session], exit_now: bool = True, code: int = 0) -> None:
    """Stop the session's work and processes; with `exit_now`, end this process at once."""
    s = state.get("s")
    if s is not None:
        with contextlib.suppress(Exception):
            s.close()
    if exit_now:
        logging.shutdown()
        os._exit(code)


def _watch_editor(pid: int, on_gone: Any, interval_s: float = 1.0) -> None:
    """Call `on_gone` when the editor process `pid` (initialize's processId) no longer exists (not
    watched when it is not visible from here at all, e.g. an editor outside this container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except OSError:
        pass

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                on_gone()
                return
            except OSError:
                continue  # exists but not ours (EPERM)

    threading.Thread(target=watch, name="ect-editor-watch", daemon=True).start()


def _tolerate_unopened_changes(ls: LanguageServer) -> None:
    """didChange for a document that was never opened (`:w new.py` from an unnamed buffer) adopts it
    instead of raising KeyError."""
    from lsprotocol import types as t

    workspace = ls.workspace
    original = workspace.update_text_document

    def update(text_doc: t.VersionedTextDocumentIdentifier, change: Any) -> None:
        from urllib.parse import unquote

        if unquote(text_doc.uri) not in workspace.text_documents:
            if not isinstance(change, t.TextDocumentContentChangeWholeDocument):
                return  # a partial change of an unknown text cannot be applied
            workspace.put_text_document(
                t.TextDocumentItem(uri=text_doc.uri, language_id="python", version=0, text=change.text)
            )
        original(text_doc, change)

    workspace.update_text_document = update  # type: ignore[method-assign]


def _payload(args: tuple[Any, ...]) -> dict[str, Any]:
    """The first dict among a command's arguments (clients pass them as a list or spread)."""
    stack: list[Any] = list(args)
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            return item
        if isinstance(item, (list, tuple)):
            stack = list(item) + stack
    return {}


@click.command("lsp")
@click.option("--stdio", is_flag=True, default=True, help="Talk LSP over stdin/stdout (the default).")
@click.option(
    "--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the server log here."
)
def lsp(stdio: bool, log_file: Path | None) -> int:
    """Run the language server over stdio (completions, diagnostics on save, verified fixes)."""
    try:
        import lsprotocol  # noqa: F401
        import pygls  # noqa: F401
    except ImportError:
        raise EctError("the language server needs the `lsp` extra: pip install 'ect-loop[lsp]'", 2) from None
    if log_file is not None:
        logging.basicConfig(filename=log_file, level=logging.INFO)
        logging.getLogger("pygls").setLevel(logging.WARNING)  # not every message's JSON
    else:
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for handler in logging.getLogger().handlers:  # on the handlers: records of every logger pass them
        handler.addFilter(_QuietAtQuit())
    # threads hand the interpreter over within 1 ms (default 5): a request waits less behind the model
    sys.setswitchinterval(0.001)
    server = build_server()
    state: dict[str, Session] = server.ect_state  # type: ignore[attr-defined]
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: _quit(state, code=128 + signum))
    try:
        from ect.lsp.stdio import serve

        serve(server)  # server.start_io(), reading each message on one thread
    finally:  # end of input (the editor closed the pipe or died) or exit: stop the tests, end now
        _quit(state)
    return 0


class _QuietAtQuit(logging.Filter):
    """Drop pygls's tracebacks for writes to an editor that already closed the pipe."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return False
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        return "BrokenPipe" not in message and "Broken pipe" not in message
