"""The ACP agent: each method of the protocol as what it does to mcode.

    initialize            capabilities mcode really has: load and list sessions, embedded
                          context, images when the model takes them, MCP over stdio and http
    session/new           load_settings(cwd) + open_session -> a Bridge; modes (the permission
                          modes) and config options (mode, thinking, model) in the reply; the
                          slash commands right after it (Zed drops updates sent before); the
                          editor's mcpServers are the session's (mcode/acp/mcp.py)
    session/load          open_session(resume_id=...) and the stored history replayed; the
                          slash commands after its reply too
    session/list          the store's sessions (of a folder), newest first, 50 a page
    session/prompt        Bridge.prompt         session/cancel   Session.cancel
    session/set_mode      Session.set_permission_mode
    session/set_config_option   mode, thinking, model (runtime.build.switch_model, between
                          prompts: model.changed)
    _mcode/steer          Session.send while a prompt runs (ACP has no steering of its own)

Sessions are mcode sessions like any other: stored as they go, listed by ``mcode sessions``,
resumed by ``mcode exec --resume`` or another editor's ``session/load`` — also while this agent
runs, as the store's claim on a session is held only while a prompt writes to it
(``Bridge.claimed``). Bad parameters get
JSON-RPC errors with a message and a hint in ``data``; nothing a client sends ends the agent.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from acp import PROTOCOL_VERSION, RequestError
from acp import schema as s

from mcode import __version__
from mcode.acp.bridge import Bridge
from mcode.acp.mcp import CAPABILITIES, editor_servers
from mcode.config import Settings, load_settings
from mcode.errors import MCodeError
from mcode.runtime.build import open_session, switch_model
from mcode.store import Store

log = logging.getLogger(__name__)
PAGE = 50
MODES = [
    ("read-only", "Read only", "Reads and searches; edits and commands are refused"),
    ("ask", "Ask", "Asks before each edit and command"),
    ("auto-edit", "Auto edit", "Edits without asking; asks before commands"),
    ("full-auto", "Full auto", "Edits and runs commands without asking"),
]
THINKING = {"on": True, "off": False, "default": None}


def model_choices(settings: Settings, current: str) -> list[str]:
    """The models an editor may switch a session to: the one it runs, the provider's default,
    and the models mcode knows of the default's family (MiniMax-*, claude-*, gpt-*)."""
    from mcode.providers.presets import MODELS

    default = settings.preset.default_model
    family = default.split("-")[0] + "-" if default else None
    known = [m for m in MODELS if family is not None and m.startswith(family)]
    return list(dict.fromkeys([current, *([default] if default else []), *known]))


def _bad(message: str, hint: str) -> RequestError:
    return RequestError.invalid_params({"message": message, "hint": hint})


def _failed(e: MCodeError) -> RequestError:
    """An mcode error as the reply to the request it ended."""
    data = {"message": e.message, "hint": e.hint}
    if e.exit_code == 2:  # usage and config errors: what the client asked for cannot be done
        return RequestError.invalid_params(data)
    return RequestError.internal_error(data)


class McodeAgent:
    """The Agent side of the package's connection (``acp.interfaces.Agent``)."""

    def __init__(self, store: Store, flags: dict[str, Any]) -> None:
        self.store = store
        self.flags = flags
        self.conn: Any = None
        self.client_fs: s.FileSystemCapabilities | None = None
        self.bridges: dict[str, Bridge] = {}

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    def on_reply(self, method: str, params: dict[str, Any], message: dict[str, Any]) -> None:
        """The reply to a request was written (mcode/acp/wire.py): after a session/new or
        session/load that succeeded, the session's slash commands."""
        result = message.get("result")
        if method == "session/new" and isinstance(result, dict):
            session_id = result.get("sessionId", "")
        elif method == "session/load" and "error" not in message:
            session_id = params.get("sessionId", "")
        else:
            return
        bridge = self.bridges.get(session_id) if isinstance(session_id, str) else None
        if bridge is not None:
            bridge.send_commands()

    # -- helpers ------------------------------------------------------------------------------
    def _bridge(self, session_id: str) -> Bridge:
        bridge = self.bridges.get(session_id)
        if bridge is None:
            raise _bad(
                f"no open session {session_id!r}",
                "create one with session/new, or open a stored one with session/load",
            )
        return bridge

    def _settings(self, cwd: str, **more: Any) -> Settings:
        path = Path(cwd)
        if not path.is_absolute():
            raise _bad(f"cwd {cwd!r} is not an absolute path", "send the workspace's full path")
        if not path.is_dir():
            raise _bad(f"cwd {cwd}: no such folder", "send an existing folder")
        try:
            return load_settings(path.resolve(), {**self.flags, **more})
        except MCodeError as e:
            raise _failed(e) from None

    def _open(self, settings: Settings, resume_id: str | None, servers: list[Any] | None) -> Bridge:
        specs, problems = editor_servers(servers, settings.workspace)
        for problem in problems:  # the agent's log (stderr): the session opens without it
            log.warning("mcode acp: %s", problem)
        try:
            session = open_session(
                settings, self.store, interactive=True, resume_id=resume_id, mcp_servers=specs
            )
        except MCodeError as e:
            if resume_id is not None:  # it may have claimed the session before it failed
                self.store.release(resume_id)
            raise _failed(e) from None
        # open_session claimed it (and read it under the claim); its prompts claim it again.
        self.store.release(session.id)
        bridge = Bridge(
            self.conn, session, settings, resumed=resume_id is not None, client_fs=self.client_fs
        )
        self.bridges[session.id] = bridge
        session.warm_up()  # the provider's client, off the loop, while the user types
        return bridge

    def _modes(self, bridge: Bridge) -> s.SessionModeState:
        return s.SessionModeState(
            current_mode_id=str(bridge.session.main.permissions.mode),
            available_modes=[
                s.SessionMode(id=mode, name=name, description=what) for mode, name, what in MODES
            ],
        )

    def _options(self, bridge: Bridge) -> list[Any]:
        session = bridge.session
        info = session.model_info
        options: list[Any] = [
            s.SessionConfigOptionSelect(
                type="select",
                id="mode",
                name="Permission mode",
                category="mode",
                current_value=str(session.main.permissions.mode),
                options=[
                    s.SessionConfigSelectOption(value=mode, name=name, description=what)
                    for mode, name, what in MODES
                ],
            ),
            s.SessionConfigOptionSelect(
                type="select",
                id="model",
                name="Model",
                category="model",
                description="the models mcode knows for this provider; others: --model",
                current_value=info.model,
                options=[
                    s.SessionConfigSelectOption(value=name, name=name)
                    for name in model_choices(bridge.settings, info.model)
                ],
            ),
        ]
        if info.thinking_switchable:
            thinking = session.main.thinking
            current = "default" if thinking is None else ("on" if thinking else "off")
            options.append(
                s.SessionConfigOptionSelect(
                    type="select",
                    id="thinking",
                    name="Thinking",
                    category="thought_level",
                    current_value=current,
                    options=[
                        s.SessionConfigSelectOption(value=v, name=v.capitalize()) for v in THINKING
                    ],
                )
            )
        return options

    # -- the protocol -------------------------------------------------------------------------
    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: s.ClientCapabilities | None = None,
        client_info: s.Implementation | None = None,
        **kwargs: Any,
    ) -> s.InitializeResponse:
        if client_capabilities is not None:
            self.client_fs = client_capabilities.fs
        return s.InitializeResponse(
            protocol_version=min(protocol_version, PROTOCOL_VERSION),
            agent_capabilities=s.AgentCapabilities(
                load_session=True,
                prompt_capabilities=s.PromptCapabilities(
                    image=self._takes_images(), audio=False, embedded_context=True
                ),
                session_capabilities=s.SessionCapabilities(list=s.SessionListCapabilities()),
                mcp_capabilities=CAPABILITIES,
            ),
            agent_info=s.Implementation(name="mcode", title="mcode", version=__version__),
            auth_methods=[],
        )

    def _takes_images(self) -> bool:
        """Whether the configured model takes images, as far as mcode knows without opening a
        session (each prompt checks its session's model again)."""
        from mcode.providers.presets import model_facts

        try:
            settings = load_settings(Path.cwd(), self.flags)
        except MCodeError:
            return False
        return settings.provider != "local" and model_facts(settings.model).supports_images

    async def new_session(
        self,
        cwd: str,
        additional_directories: list[str] | None = None,
        mcp_servers: list[Any] | None = None,
        **kwargs: Any,
    ) -> s.NewSessionResponse:
        bridge = self._open(self._settings(cwd), None, mcp_servers)
        return s.NewSessionResponse(
            session_id=bridge.id, modes=self._modes(bridge), config_options=self._options(bridge)
        )

    async def load_session(
        self,
        cwd: str,
        session_id: str,
        mcp_servers: list[Any] | None = None,
        additional_directories: list[str] | None = None,
        **kwargs: Any,
    ) -> s.LoadSessionResponse:
        bridge = self.bridges.get(session_id)
        if bridge is None:
            settings = self._settings(cwd)
            try:
                found = self.store.find(session_id)
            except MCodeError as e:
                raise _bad(e.message, e.hint) from None
            if found.id != session_id:
                raise _bad(f"no session {session_id!r}", "send a whole id from session/list")
            bridge = self._open(settings, session_id, mcp_servers)
        else:
            # Open here already: read what another process stored of it since (the replay
            # below shows it whole). Not while that process runs it: its next prompt will.
            # It keeps the MCP servers it opened with: its tool list is the model's stable
            # prefix, and the editor sends the same ones again.
            with contextlib.suppress(RequestError), bridge.claimed(show=False):
                pass
        await bridge.replay(self.store.events(session_id))
        return s.LoadSessionResponse(
            modes=self._modes(bridge), config_options=self._options(bridge)
        )

    async def list_sessions(
        self, cwd: str | None = None, cursor: str | None = None, **kwargs: Any
    ) -> s.ListSessionsResponse:
        try:
            start = int(cursor) if cursor else 0
        except ValueError:
            raise _bad(
                f"cursor {cursor!r} is not one mcode gave", "send nextCursor as it came"
            ) from None
        where = str(Path(cwd).resolve()) if cwd else None
        rows = self.store.sessions(cwd=where, limit=start + PAGE + 1)[max(start, 0) :]
        page = rows[:PAGE]
        return s.ListSessionsResponse(
            sessions=[
                s.SessionInfo(
                    session_id=r.id,
                    cwd=r.cwd,
                    title=r.title or None,
                    updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.updated_at)),
                )
                for r in page
            ],
            next_cursor=str(start + PAGE) if len(rows) > PAGE else None,
        )

    async def set_session_mode(self, session_id: str, mode_id: str, **kwargs: Any) -> None:
        bridge = self._bridge(session_id)
        try:
            bridge.session.set_permission_mode(mode_id)
        except MCodeError as e:
            raise _failed(e) from None

    async def set_config_option(
        self, config_id: str, session_id: str, value: str | bool, **kwargs: Any
    ) -> s.SetSessionConfigOptionResponse:
        bridge = self._bridge(session_id)
        session = bridge.session
        if config_id == "mode" and isinstance(value, str):
            try:
                session.set_permission_mode(value)
            except MCodeError as e:
                raise _failed(e) from None
        elif config_id == "thinking" and session.model_info.thinking_switchable:
            if value not in THINKING:
                raise _bad(f"thinking {value!r}", "choose on, off or default")
            session.set_thinking(THINKING[str(value)])
        elif config_id == "model":
            choices = model_choices(bridge.settings, session.model_info.model)
            if value not in choices:
                raise _bad(
                    f"mcode does not know a model {value!r} for this provider",
                    f"choose one of {', '.join(choices)}, or start mcode acp with --model",
                )
            if value != session.model_info.model:
                settings = self._settings(str(bridge.settings.workspace), model=value)
                try:
                    with bridge.claimed():  # model.changed is stored
                        await switch_model(session, settings)
                except MCodeError as e:
                    raise _failed(e) from None
                bridge.settings = settings
        else:
            raise _bad(f"no config option {config_id!r}", "use one that session/new listed")
        return s.SetSessionConfigOptionResponse(config_options=self._options(bridge))

    async def authenticate(self, method_id: str, **kwargs: Any) -> None:
        raise _bad(
            f"mcode has no authentication method {method_id!r}",
            "mcode reads its API keys from the environment and the config",
        )

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> s.PromptResponse:
        return await self._bridge(session_id).prompt(prompt)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        bridge = self.bridges.get(session_id)
        if bridge is not None:
            bridge.session.cancel()

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "mcode/steer":
            session_id, text = params.get("sessionId"), params.get("text")
            if not isinstance(session_id, str) or not isinstance(text, str):
                raise _bad("_mcode/steer takes sessionId and text", 'send {"sessionId", "text"}')
            self._bridge(session_id).steer(text)
            return {"steered": True}
        raise RequestError.method_not_found(f"_{method}")

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    async def close(self) -> None:
        for bridge in list(self.bridges.values()):
            try:
                await bridge.close()
            except Exception:  # one session's failure must not keep the others open
                continue
        self.bridges.clear()
