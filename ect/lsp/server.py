"""`ect lsp`: the language server over stdio (pygls 2.x).

- completion / inlineCompletion: internal members from the symbol index, plus the code model's
  validated completion when a model is trained (loaded once, kept warm; stale requests give up);
- diagnostics on save: the loop for that file in the background (compile + affected tests), a newer
  save cancels an older run;
- codeAction: the verified fixes for the diagnostics under the cursor;
- telemetry: completion.shown / accepted / dismissed, fix.offered / applied in the event log.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
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


def word_before(doc: str, line: int, col: int) -> str:
    """The part of a word typed before (line, col), 0-based: what a completion item must replace."""
    lines = doc.splitlines()
    head = lines[line][:col] if line < len(lines) else ""
    return _WORD_END.search(head).group(0)  # type: ignore[union-attr]


class Session:
    """Per-workspace state: config, symbol index, fix engine, diagnostics worker, model, telemetry."""

    def __init__(self, server: LanguageServer, folder: Path) -> None:
        from ect.config import load_config
        from ect.errors import NotARepoError
        from ect.fix.engine import FixEngine
        from ect.fix.warm_pytest import WarmPytest
        from ect.lsp.diagnose import Diagnoser
        from ect.lsp.model_bridge import ModelBridge
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
        self.model = ModelBridge(self.cfg)
        self.published: set[str] = set()
        self.offered: dict[str, list[tuple[FixResult, Fix]]] = {}
        self.seq: dict[str, int] = {}
        self.ready = threading.Event()
        self.warm = WarmPytest(self.root)
        self.engine.use_warm_pytest(self.warm)  # loop runs and verification go through the warm process
        self.diagnoser = Diagnoser(self.engine, self.publish, fixes=self.settings.fixes, warm=self.warm)
        threading.Thread(target=self._warm, name="ect-index", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.warm.start()
            self.engine.index()
        finally:
            self.ready.set()
        if self.settings.model:
            self.model.warm(self.engine.current_index)

    def rel(self, uri: str) -> str | None:
        from pygls.uris import to_fs_path

        fs = to_fs_path(uri)
        if fs is None:
            return None
        try:
            return Path(fs).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def uri(self, rel: str) -> str:
        return (self.root / rel).as_uri()

    def publish(self, run: Run) -> None:
        from lsprotocol import types as t

        by_uri: dict[str, list[t.Diagnostic]] = {}
        for p in run.problems:
            rng = t.Range(
                t.Position(max(p.line - 1, 0), max(p.col - 1, 0)), t.Position(max(p.line - 1, 0), 10**4)
            )
            sev = t.DiagnosticSeverity.Warning if p.severity == "warning" else t.DiagnosticSeverity.Error
            by_uri.setdefault(self.uri(p.path), []).append(
                t.Diagnostic(
                    rng, p.message, severity=sev, source=p.source, data={"key": p.key} if p.key else None
                )
            )
        for uri in (self.published | {self.uri(run.path)}) - set(by_uri):
            by_uri[uri] = []  # clear old problems; the saved file always gets an answer
        self.published = {u for u, d in by_uri.items() if d}
        for uri, diags in by_uri.items():
            self.server.text_document_publish_diagnostics(
                t.PublishDiagnosticsParams(uri=uri, diagnostics=diags)
            )

    def completer(self, rel: str) -> Any:
        from ect.lsp.completion import Completer
        from ect.models.index import module_name_for

        index = self.engine.current_index
        if index is None:
            return None
        return Completer(index, module_name_for(self.root / rel, self.root), rel.endswith("__init__.py"))


def build_server() -> LanguageServer:
    from lsprotocol import types as t
    from pygls.lsp.server import LanguageServer

    from ect import __version__

    server = LanguageServer("ect", __version__)
    state: dict[str, Session] = {}

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
        try:
            state["s"] = Session(ls, folder)
        except EctError as exc:
            ls.window_show_message(t.ShowMessageParams(t.MessageType.Error, f"ect: {exc}"))

    @server.feature(t.TEXT_DOCUMENT_DID_SAVE, t.SaveOptions(include_text=False))
    def did_save(ls: LanguageServer, params: t.DidSaveTextDocumentParams) -> None:
        s = session()
        rel = s.rel(params.text_document.uri) if s else None
        if (
            s is not None
            and s.settings.diagnostics
            and rel is not None
            and (rel.endswith(".py") or rel.endswith(".toml"))
        ):
            _check_applied(s, params.text_document.uri)
            s.offered.pop(rel, None)
            s.diagnoser.schedule(rel)

    def _index_items(s: Session, uri: str, rel: str, line: int, col: int) -> tuple[list[Any], str]:
        doc = ls_doc(uri)
        completer = s.completer(rel)
        if completer is None:
            return [], doc
        return completer.complete(doc, line, col), doc

    def ls_doc(uri: str) -> str:
        return server.workspace.get_text_document(uri).source

    def _model_text(s: Session, uri: str, rel: str, doc: str, line: int, col: int) -> str | None:
        if s.model.engine is None:
            return None
        from ect.models.index import module_name_for

        s.seq[uri] = my = s.seq.get(uri, 0) + 1
        lines = doc.splitlines(True)
        offset = sum(len(x) for x in lines[:line]) + col
        module = module_name_for(s.root / rel, s.root)
        return s.model.complete(module, doc, offset, lambda: s.seq.get(uri) != my)

    @server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=["."]))
    @server.thread()
    def completion(ls: LanguageServer, params: t.CompletionParams) -> t.CompletionList:
        s = session()
        uri = params.text_document.uri
        rel = s.rel(uri) if s else None
        if s is None or rel is None:
            return t.CompletionList(is_incomplete=False, items=[])
        pos = params.position
        found, doc = _index_items(s, uri, rel, pos.line, pos.character)
        items: list[t.CompletionItem] = []
        model_text = _model_text(s, uri, rel, doc, pos.line, pos.character)
        origin = "model" if model_text else "index"
        shown_id = s.telemetry.shown(
            uri, origin, s.model.name, len(found) + bool(model_text), sum(len(i.remainder) for i in found[:1])
        )
        if model_text:
            # the item replaces the word being typed (clients filter and replace by it): it carries the word
            typed = word_before(doc, pos.line, pos.character)
            whole = typed + model_text
            label = whole.splitlines()[0][:60] or whole[:60]
            start = t.Position(line=pos.line, character=pos.character - len(typed))
            items.append(
                t.CompletionItem(
                    label=label,
                    kind=t.CompletionItemKind.Snippet,
                    detail=f"ect model ({s.model.name})",
                    filter_text=whole,
                    text_edit=t.TextEdit(range=t.Range(start, pos), new_text=whole),
                    sort_text="0000",
                    command=t.Command(
                        title="accept",
                        command=ACCEPT,
                        arguments=[{"id": shown_id, "chars": len(model_text), "label": label}],
                    ),
                )
            )
        for rank, it in enumerate(found[:200]):
            items.append(
                t.CompletionItem(
                    label=it.label,
                    kind=t.CompletionItemKind(KINDS.get(it.kind, 6)),
                    detail=it.detail,
                    documentation=it.doc or None,
                    sort_text=f"{rank + 1:04d}",
                    filter_text=it.label,
                    command=t.Command(
                        title="accept",
                        command=ACCEPT,
                        arguments=[{"id": shown_id, "chars": len(it.remainder), "label": it.label}],
                    ),
                )
            )
        return t.CompletionList(is_incomplete=False, items=items)

    @server.feature(t.TEXT_DOCUMENT_INLINE_COMPLETION, t.InlineCompletionOptions())
    @server.thread()
    def inline_completion(ls: LanguageServer, params: t.InlineCompletionParams) -> t.InlineCompletionList:
        s = session()
        uri = params.text_document.uri
        rel = s.rel(uri) if s else None
        if s is None or rel is None:
            return t.InlineCompletionList(items=[])
        pos = params.position
        found, doc = _index_items(s, uri, rel, pos.line, pos.character)
        text = _model_text(s, uri, rel, doc, pos.line, pos.character)
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
            offered = []
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
                offered.append(fx)
                s.offered.setdefault(fx.path, []).append((res, fx))
            if offered:
                s.engine.record("fix.offered", res, offered[0], source="lsp")
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
            s.diagnoser.stop()
            s.telemetry.close()

    return server


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
    else:
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    build_server().start_io()
    return 0
