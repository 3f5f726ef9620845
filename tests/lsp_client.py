"""An editor for tests of ``mcode lsp``: a pytest-lsp client that behaves as an editor does.

``Editor`` starts ``mcode lsp`` as a subprocess in a repository, pointed at a scripted model
server, and initializes it with an editor's capabilities. It keeps its own copy of every
document it opened and, like a real editor, applies the server's ``workspace/applyEdit`` to that
copy and then tells the server with ``didChange`` (incremental; ``late_changes`` seconds after
answering, as an editor that debounces its notifications does). Questions
(``window/showMessageRequest``) are answered with ``answer`` ("Allow", "Deny", or None for a
client that never answers).

    async with Editor(home, repo, server) as ed:
        uri = ed.open("calc.py", "text the buffer holds (not saved)")
        summary = await ed.command("mcode.task", {"prompt": "..."})
        assert ed.text(uri) == "..."
"""

from __future__ import annotations

import asyncio
import functools
import sys
from pathlib import Path
from typing import Any

from helpers import clean_env
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client


def editor_capabilities(
    *, ask: bool = True, progress: bool = True, apply: bool = True
) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            apply_edit=apply,
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True),
        ),
        window=types.WindowClientCapabilities(
            work_done_progress=progress,
            show_message=types.ShowMessageRequestClientCapabilities() if ask else None,
            show_document=types.ShowDocumentClientCapabilities(support=True),
        ),
        text_document=types.TextDocumentClientCapabilities(
            code_action=types.CodeActionClientCapabilities(
                data_support=True,
                resolve_support=types.ClientCodeActionResolveOptions(properties=["command"]),
            ),
        ),
    )


def apply_text_edit(text: str, edit: types.TextEdit) -> str:
    """``text`` with ``edit`` applied (positions in UTF-16 units, as LSP's default)."""

    def offset(pos: types.Position) -> int:
        lines = text.split("\n")
        if pos.line >= len(lines):
            return len(text)
        start = sum(len(line) + 1 for line in lines[: pos.line])
        units, col = 0, 0
        for ch in lines[pos.line]:
            if units >= pos.character:
                break
            units += 2 if ord(ch) > 0xFFFF else 1
            col += 1
        return start + col

    a, b = offset(edit.range.start), offset(edit.range.end)
    return text[:a] + edit.new_text + text[b:]


class Editor:
    def __init__(
        self,
        home: Path,
        repo: Path,
        server: Any,
        *args: str,
        capabilities: types.ClientCapabilities | None = None,
        answer: str | None = "Allow",
        init_options: Any = None,
        provider: str = "openai",
        env: dict[str, str] | None = None,
        late_changes: float = 0.0,
    ) -> None:
        self.home = home
        self.repo = repo
        self.env = env or {}
        # Seconds after an applied edit its didChange is sent (0: before answering).
        self.late_changes = late_changes
        self.args = [
            "lsp",
            "--provider",
            provider,
            "--base-url",
            server.base_url,
            *(["--model", "test-model"] if provider == "openai" else []),
            *args,
        ]
        self.capabilities = capabilities or editor_capabilities()
        self.answer = answer
        self.init_options = init_options
        self.client: LanguageClient = make_test_lsp_client()
        self.docs: dict[str, tuple[int, str]] = {}
        self.edits: list[types.ApplyWorkspaceEditParams] = []
        self.questions: list[types.ShowMessageRequestParams] = []
        self.asked = asyncio.Event()
        self.release = asyncio.Event()
        self._register()

    def _register(self) -> None:
        client = self.client

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            self.edits.append(params)
            for change in params.edit.document_changes or []:
                assert isinstance(change, types.TextDocumentEdit)
                uri = change.text_document.uri
                version, text = self.docs.get(uri, (0, (self.repo / _name(uri)).read_text()))
                for edit in change.edits:
                    assert isinstance(edit, types.TextEdit)
                    text = apply_text_edit(text, edit)
                    if uri in self.docs:
                        version += 1
                        notify = functools.partial(
                            self.client.text_document_did_change,
                            types.DidChangeTextDocumentParams(
                                text_document=types.VersionedTextDocumentIdentifier(
                                    uri=uri, version=version
                                ),
                                content_changes=[
                                    types.TextDocumentContentChangePartial(
                                        range=edit.range, text=edit.new_text
                                    )
                                ],
                            ),
                        )
                        if self.late_changes:  # as editors that debounce their didChange
                            asyncio.get_running_loop().call_later(self.late_changes, notify)
                        else:
                            notify()
                self.docs[uri] = (version, text)
            return types.ApplyWorkspaceEditResult(applied=True)

        @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
        async def ask(params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
            self.questions.append(params)
            self.asked.set()
            if self.answer is None:
                await self.release.wait()  # a client that does not answer (until it leaves)
                return types.MessageActionItem(title="Allow")  # too late to count
            return types.MessageActionItem(title=self.answer)

    async def __aenter__(self) -> Editor:
        env = clean_env(self.home, **self.env)
        await self.client.start_io(
            sys.executable, "-m", "mcode", *self.args, env=env, cwd=self.repo
        )
        await self.client.initialize_session(
            types.InitializeParams(
                capabilities=self.capabilities,
                root_uri=self.repo.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=self.repo.as_uri(), name="repo")],
                initialization_options=self.init_options,
            )
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await asyncio.sleep(0.05)  # late answers go out before shutdown
        try:
            await asyncio.wait_for(self.client.shutdown_session(), 20)
        finally:
            await self.client.stop()

    # -- documents -------------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return (self.repo / name).as_uri()

    def open(self, name: str, text: str | None = None) -> str:
        """Open ``name`` with ``text`` in the buffer (default: the file's text on disk)."""
        uri = self.uri(name)
        text = (self.repo / name).read_text() if text is None else text
        self.docs[uri] = (1, text)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        return uri

    def type(self, uri: str, line: int, character: int, text: str) -> None:
        """Insert ``text`` at a position, as typing does (an incremental didChange)."""
        version, old = self.docs[uri]
        at = types.Position(line=line, character=character)
        edit = types.TextEdit(range=types.Range(start=at, end=at), new_text=text)
        self.docs[uri] = (version + 1, apply_text_edit(old, edit))
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version + 1),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=edit.range, text=text)
                ],
            )
        )

    def text(self, uri: str) -> str:
        return self.docs[uri][1]

    # -- requests --------------------------------------------------------------------------------
    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args))
        )

    def progress_messages(self) -> list[str]:
        out: list[str] = []
        for reports in self.client.progress_reports.values():
            for r in reports:
                if getattr(r, "message", None):
                    out.append(r.message)
        return out


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def run(coro: Any, timeout: float = 60) -> Any:
    """Run an async scenario to its end (the project's tests are sync; see provider_helpers)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
