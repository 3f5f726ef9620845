"""``mcode lsp``: the language server, a front end of the Session for editors.

One server per editor connection (stdio, or ``--tcp PORT``). It keeps the editor's buffers
(pygls's workspace, incremental sync), runs each task in its own stored Session
(lsp/tasks.py) whose file tools read those buffers and edit through ``workspace/applyEdit``
(lsp/editor.py), offers code actions (lsp/actions.py), inline completion (lsp/inline.py) and
review diagnostics (lsp/review.py), and answers every request, however malformed or early
(lsp/protocol.py).

Commands (``workspace/executeCommand``), each argument one JSON object:

    mcode.task        {"prompt", "uri"?, "thinking"?}   a task with tools; returns its summary
    mcode.codeAction  {"action", "uri", "range", ...}   what a code action runs
    mcode.review      {"uri"}                           findings as diagnostics (source mcode)
    mcode.resume      {"session", "prompt"?}            continue a stored session
    mcode.steer       {"text", "session"?}              a requirement for the running task
    mcode.cancel      {"session"?} or nothing           cancel one task, or all
    mcode.teamTask    {"prompt", "uri"?}                an agent team (lsp/team.py); its summary
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from mcode import __version__
from mcode.errors import MCodeError, UsageError

from . import actions, review
from .editor import EditorFiles
from .inline import InlineCompleter
from .protocol import StrictProtocol, is_parse_error
from .tasks import Tasks

logger = logging.getLogger(__name__)

COMMANDS = (
    "mcode.task",
    actions.COMMAND,
    "mcode.review",
    "mcode.resume",
    "mcode.steer",
    "mcode.cancel",
    "mcode.teamTask",
)
# LSP's RequestFailed: the request was valid, the work failed (a model call, the store).
REQUEST_FAILED = -32803


class McodeServer(LanguageServer):
    def __init__(self, flags: dict[str, Any], cwd: Path) -> None:
        super().__init__(
            "mcode",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=StrictProtocol,
        )
        self.flags = flags
        self.root = cwd
        self._tasks: Tasks | None = None
        self._files: EditorFiles | None = None
        self.completer = InlineCompleter(self._completion_session)
        self.findings = review.Findings()
        self.debounce = 0.075
        protocol = self.protocol
        assert isinstance(protocol, StrictProtocol)
        protocol.on_cancel = self._cancelled_request
        _register(self)

    # -- parts made once the client has said who it is -----------------------------------------
    @property
    def files(self) -> EditorFiles:
        if self._files is None:
            self._files = EditorFiles(self, asyncio.get_running_loop())
        return self._files

    @property
    def tasks(self) -> Tasks:
        if self._tasks is None:
            from mcode.config import data_home
            from mcode.store import Store

            self._tasks = Tasks(self, self.files, Store(data_home() / "sessions.db"), self.flags)
        return self._tasks

    def _completion_session(self) -> Any:
        from mcode.runtime.build import open_session

        return open_session(self.tasks.settings(thinking=False), None, interactive=False)

    def _cancelled_request(self, msg_id: Any) -> None:
        if self._tasks is not None:
            self._tasks.cancel_request(msg_id)

    def encoding(self) -> str:
        encoding = self.workspace.position_encoding
        return str(getattr(encoding, "value", encoding) or "utf-16")

    def path_of(self, uri: str) -> Path:
        path = to_fs_path(uri)
        if path is None:
            raise UsageError(f"{uri} is not a file on this machine", hint="open a local file")
        return Path(path)

    def rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def text_of(self, uri: str) -> str:
        """The editor's text of ``uri``, or the file's on disk if it is not open."""
        path = self.path_of(uri)
        text = self.files.text(path)
        if text is not None:
            return text
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise UsageError(f"cannot read {uri}: {e.strerror}", hint="open it first") from None

    def report_server_error(self, error: Exception, source: Any) -> None:
        # A body that is not JSON has no id to answer; JSON-RPC answers it with id null.
        if is_parse_error(error) or is_parse_error(error.__cause__ or error):
            protocol = self.protocol
            assert isinstance(protocol, StrictProtocol)
            protocol.refuse_unparsable(error)
            return
        logger.error("server error (%s): %s", getattr(source, "__name__", source), error)

    async def close(self) -> None:
        if self._tasks is not None:
            if self._tasks.running:
                self._tasks.cancel(every=True)
            for _ in range(200):  # the cancelled turns wind up (their files stay consistent)
                if not self._tasks.running:
                    break
                await asyncio.sleep(0.01)
        await self.completer.close()


def _rpc_error(e: MCodeError) -> JsonRpcException:
    message = f"{e.message} ({e.hint})" if e.hint else e.message
    if isinstance(e, UsageError):
        return JsonRpcInvalidParams(message, data={"hint": e.hint})
    return JsonRpcException(message, code=REQUEST_FAILED, data={"hint": e.hint})


def _one_object(args: tuple[Any, ...], command: str, example: str) -> dict[str, Any]:
    if len(args) > 1 or (args and not isinstance(args[0], dict)):
        raise UsageError(f"{command} takes one JSON object argument", hint=f"e.g. [{example}]")
    return dict(args[0]) if args else {}


def _text(obj: dict[str, Any], key: str, command: str, example: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{command} needs a non-empty {key!r}", hint=f"e.g. [{example}]")
    return value


def _register(ls: McodeServer) -> None:
    """Every handler of the server, named after the LSP method or command it serves."""

    @ls.feature(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        root = None
        if params.workspace_folders:
            root = to_fs_path(params.workspace_folders[0].uri)
        elif params.root_uri:
            root = to_fs_path(params.root_uri)
        elif params.root_path:
            root = params.root_path
        if root and os.path.isdir(root):
            ls.root = Path(root).resolve()
        opts = params.initialization_options
        if isinstance(opts, dict) and isinstance(opts.get("inlineDebounceMs"), int | float):
            ls.completer.debounce = max(0.0, float(opts["inlineDebounceMs"]) / 1000)

    @ls.feature(types.SHUTDOWN)
    async def shutdown(_params: Any) -> None:
        await ls.close()

    @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        doc = ls.workspace.get_text_document(uri)
        diagnostics = ls.findings.update(uri, doc.source)
        if diagnostics is not None:
            ls.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
            )

    @ls.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=sorted({str(a.kind) for a in actions.ACTIONS}),
            resolve_provider=True,
        ),
    )
    def code_action(params: types.CodeActionParams) -> list[types.CodeAction]:
        caps = ls.client_capabilities.text_document
        ca = caps.code_action if caps is not None else None
        resolve = bool(
            ca is not None
            and ca.data_support
            and ca.resolve_support is not None
            and "command" in ca.resolve_support.properties
        )
        return actions.offered(params, resolve=resolve)

    @ls.feature(types.CODE_ACTION_RESOLVE)
    def code_action_resolve(action: types.CodeAction) -> types.CodeAction:
        try:
            actions.Request.parse(action.data)
        except UsageError as e:
            raise _rpc_error(e) from None
        action.command = actions.command_for(action)
        return action

    @ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        params: types.InlineCompletionParams,
    ) -> types.InlineCompletionList | None:
        uri = params.text_document.uri
        try:
            text = ls.text_of(uri)
            return await ls.completer.complete(
                text, uri, ls.rel(ls.path_of(uri)), params.position, ls.encoding()
            )
        except MCodeError as e:
            raise _rpc_error(e) from None

    @ls.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def progress_cancel(params: types.WorkDoneProgressCancelParams) -> None:
        if ls._tasks is not None:
            ls._tasks.cancel_token(params.token)

    def command(name: str) -> Any:
        def wrap(fn: Any) -> Any:
            async def run(*args: Any) -> Any:
                try:
                    return await fn(*args)
                except MCodeError as e:
                    raise _rpc_error(e) from None

            run.__name__ = fn.__name__
            return ls.command(name)(run)

        return wrap

    @command("mcode.task")
    async def task(*args: Any) -> dict[str, Any]:
        example = '{"prompt": "what to do", "uri": "file:///... (optional)"}'
        obj = _one_object(args, "mcode.task", example)
        prompt = _text(obj, "prompt", "mcode.task", example)
        uri = obj.get("uri")
        if isinstance(uri, str):
            prompt += f"\n\n(The user has {ls.rel(ls.path_of(uri))} open in the editor.)"
        thinking = obj.get("thinking") if isinstance(obj.get("thinking"), bool) else None
        title = prompt.strip().splitlines()[0][:60]
        return await ls.tasks.run(
            prompt, title=title, thinking=thinking, request_id=ls.protocol.msg_id
        )

    @command(actions.COMMAND)
    async def code_action_command(*args: Any) -> dict[str, Any]:
        obj = _one_object(args, actions.COMMAND, '{"action": "explain", "uri": ..., "range": ...}')
        request = actions.Request.parse(obj)
        path = ls.path_of(request.uri)
        text = ls.text_of(request.uri)
        return await ls.tasks.run(
            actions.prompt(request, ls.rel(path), text),
            title=f"{request.action.title.removeprefix('mcode: ')} {ls.rel(path)}",
            thinking=request.action.thinking,
            request_id=ls.protocol.msg_id,
        )

    @command("mcode.review")
    async def review_command(*args: Any) -> dict[str, Any]:
        example = '{"uri": "file:///..."}'
        obj = _one_object(args, "mcode.review", example)
        uri = _text(obj, "uri", "mcode.review", example)
        rel = ls.rel(ls.path_of(uri))
        summary = await ls.tasks.run(
            review.review_prompt(rel),
            title=f"Review {rel}",
            thinking=False,
            request_id=ls.protocol.msg_id,
            show=False,
        )
        findings = review.parse_findings(summary.get("answer") or "", ls.text_of(uri))
        diagnostics = ls.findings.set(uri, findings)
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
        )
        if summary["reason"] == "completed":
            n = len(findings)
            ls.tasks.say(f"mcode review of {rel}: {n or 'no'} finding{'s' * (n != 1)}")
        return {**summary, "findings": review.as_json(findings)}

    @command("mcode.resume")
    async def resume(*args: Any) -> dict[str, Any]:
        example = '{"session": "ID", "prompt": "what next (optional)"}'
        obj = _one_object(args, "mcode.resume", example)
        session_id = _text(obj, "session", "mcode.resume", example)
        prompt = obj.get("prompt") if isinstance(obj.get("prompt"), str) else None
        return await ls.tasks.run(
            prompt,
            title=f"resume {session_id[:12]}",
            resume_id=session_id,
            request_id=ls.protocol.msg_id,
        )

    @command("mcode.steer")
    async def steer(*args: Any) -> dict[str, Any]:
        example = '{"text": "also keep the old name", "session": "ID (optional)"}'
        obj = _one_object(args, "mcode.steer", example)
        text = _text(obj, "text", "mcode.steer", example)
        found = ls.tasks.find(obj.get("session") if isinstance(obj.get("session"), str) else None)
        found.session.send(text)
        return {"session": found.session.id, "steered": True}

    @command("mcode.cancel")
    async def cancel(*args: Any) -> dict[str, Any]:
        obj = _one_object(args, "mcode.cancel", '{"session": "ID (optional)"}')
        if not ls.tasks.running:
            return {"cancelled": []}
        session = obj.get("session") if isinstance(obj.get("session"), str) else None
        return {"cancelled": ls.tasks.cancel(session, every=session is None)}

    @command("mcode.teamTask")
    async def team_task(*args: Any) -> dict[str, Any]:
        example = '{"prompt": "what the team builds", "uri": "file:///... (optional)"}'
        obj = _one_object(args, "mcode.teamTask", example)
        prompt = _text(obj, "prompt", "mcode.teamTask", example)
        title = prompt.strip().splitlines()[0][:60]
        uri = obj.get("uri")
        if isinstance(uri, str):
            prompt += f"\n\n(The user has {ls.rel(ls.path_of(uri))} open in the editor.)"
        return await ls.tasks.run_team(prompt, title=title, request_id=ls.protocol.msg_id)


def serve(flags: dict[str, Any], *, cwd: Path, tcp: int | None = None) -> int:
    """Serve one editor on stdio (or ``tcp``'s port on 127.0.0.1) until it exits."""
    import threading

    from mcode.runtime.build import preload

    server = McodeServer(flags, cwd)
    # What the first task's model request would wait for, while the editor is still opening.
    threading.Thread(target=preload, name="mcode-lsp-preload", daemon=True).start()
    if tcp is not None:
        server.start_tcp("127.0.0.1", tcp)
    else:
        server.start_io()
    return 0
