"""Configuration: defaults < user file < project file < environment < flags.

Files are TOML: ``$XDG_CONFIG_HOME/mcode/config.toml`` (user) and ``<workspace>/.mcode/config.toml``
(project, wins over user). Every key is also an environment variable: ``MCODE_`` plus the dotted
key upper-cased with dots as underscores (``network.max_retries`` -> ``MCODE_NETWORK_MAX_RETRIES``;
lists are comma-separated). A bad file, key or value raises :class:`ConfigError` naming the file,
the key and the line; an ``MCODE_`` variable that is neither a key nor in :data:`ENV_ONLY` is an
error too, naming the closest known name (a misspelt variable must not be ignored while a
misspelt key in a file stops the run).

Provider resolution when none is named (DESIGN.md): ``MINIMAX_API_KEY`` -> minimax,
``ANTHROPIC_API_KEY`` -> anthropic, ``OPENAI_API_KEY`` -> openai, else the embedded local model.
The reason is kept in :attr:`Settings.provider_reason` and shown in ``session.started``.

A project file cannot set ``base_url`` or ``api_key_env``: a cloned repository must not be able
to send your API key to a server of its choosing. Until the user trusts the folder
(``mcode/trust.py``), a project file may also not widen what tools may do: the keys in
:data:`WIDENING_KEYS` are dropped when their value widens (and listed in
:attr:`Settings.project_ignored`, which ``session.started`` shows), values that narrow still apply,
and the project's deny rules join the user's instead of replacing them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcode.errors import ConfigError
from mcode.providers.network import NetworkSettings
from mcode.providers.presets import (
    PRESETS,
    REPLAY_MODES,
    ProviderPreset,
    model_facts,
    resolve_preset,
)

PERMISSION_MODES = ("read-only", "ask", "auto-edit", "full-auto")
# What commands may touch (mcode/tools/sandbox.py), narrowest first; independent of the above.
SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")
DEFAULT_SANDBOX = "workspace-write"

# dotted key -> expected type ("str", "int", "float", "bool", "list", "thinking")
_KEYS: dict[str, str] = {
    "provider": "str",
    "model": "str",
    "base_url": "str",
    "thinking": "thinking",
    "permission_mode": "str",
    "max_turns": "int",
    "context_window": "int",
    "approval_timeout": "float",
    "permissions.allow": "list",
    "permissions.deny": "list",
    "permissions.add_dirs": "list",
    "permissions.allow_outside": "bool",
    "network.connect_timeout": "float",
    "network.first_event_timeout": "float",
    "network.idle_timeout": "float",
    "network.max_retries": "int",
    "network.backoff_base": "float",
    "network.backoff_max": "float",
    "local.model": "str",
    "local.threads": "int",
    "local.context": "int",
    "local.max_output_tokens": "int",
    "local.end_after": "int",
    "local.tool_steps": "int",
    "local.engine": "str",
    "local.attention": "str",
    "tools.bash_timeout": "float",
    "tools.output_cap": "int",
    "tools.pass_env": "list",
    "computer.enabled": "bool",
    "computer.keep_screenshots": "int",
    "computer.settle_delay": "float",
    "computer.image_format": "str",
    "computer.monitor": "int",
    "team.parallel": "int",
    "team.rounds": "int",
    "team.rate_limit": "int",
    "team.budget": "str",
    "team.task_budget": "str",
    "team.resolve_attempts": "int",
    "sandbox.mode": "str",
    "sandbox.network": "bool",
    "budget.max_time": "float",
    "budget.max_tokens": "int",
    "budget.max_cost": "float",
}
# Per-provider settings: [providers.<name>] ... (region and api pick one of the preset's
# endpoints; reasoning_replay is how thinking goes back on Chat Completions, think_in_prompt
# says the server's template opens <think> in the prompt).
_PROVIDER_KEYS = {
    "base_url": "str",
    "model": "str",
    "api_key_env": "str",
    "region": "str",
    "api": "str",
    "reasoning_replay": "str",
    "think_in_prompt": "bool",
    "max_output_tokens": "int",
    "thinking_budget": "int",
}
_PROJECT_FORBIDDEN = {"base_url", "api_key_env"}
# What an untrusted project file may not set, because it widens what mcode does on its own:
# the permission mode (above the user's), allow rules, reaching outside the workspace, and a
# model file of its choosing (GGUF is parsed by native code, a memory-safety surface).
WIDENING_KEYS = (
    "permission_mode",
    "permissions.allow",
    "permissions.allow_outside",
    "permissions.add_dirs",
    "local.model",
    "model",  # only a .gguf path or a model folder, which the local provider loads
    "computer.enabled",  # the mouse and keyboard of the user's screen
)
# Keys whose value is one of a fixed set, checked where the value is read (file:line, variable).
_CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "provider": ("provider", tuple(PRESETS)),
    "permission_mode": ("permission mode", PERMISSION_MODES),
    "local.engine": ("local engine", ("llama_cpp", "torch")),  # local_backend/engines.py
    "computer.image_format": ("screenshot format", ("png", "jpeg")),
    "sandbox.mode": ("sandbox mode", SANDBOX_MODES),  # mcode/tools/sandbox.py
}
# MCODE_ variables that are not config keys. A new one is registered here, or every run that
# sets it stops with "unknown environment variable".
ENV_ONLY: dict[str, str] = {
    "MCODE_DATA_DIR": "the data folder (sessions.db, checkpoints)",
    "MCODE_FAULT_KILL_IN_WRITE": "crash tests: kill the process inside a file write",
    "MCODE_BWRAP": "the bubblewrap binary of the sandbox (a path or a name on PATH)",
    "MCODE_FAULT_DISK_FULL": "fault tests: 'files' or 'store:N' fail writes as a full disk does",
}
# Numbers that may be 0 (no retries, no backoff); every other number must be above 0.
_ZERO_OK = {
    "network.max_retries",
    "network.backoff_base",
    "network.backoff_max",
    "computer.settle_delay",
    "computer.monitor",  # 0: all monitors as one image
    "team.resolve_attempts",  # 0: a merge conflict is reported at once
    "local.end_after",  # 0: an answer is never steered to end
}
# Keys whose value is a budget (``turns=N,tokens=N,seconds=S``), read by read_limits.
_LIMIT_KEYS = ("team.budget", "team.task_budget")
LIMIT_NAMES = ("turns", "tokens", "seconds")


@dataclass(slots=True)
class TeamSettings:
    """``[team]`` (mcode exec --team): producers at once, verifications per task, model calls
    a minute for the whole team, the budgets (``turns=N,tokens=N,seconds=S``) and resolver
    attempts per merge conflict. (The plan gate waits ``approval_timeout``, as a permission
    question does.)"""

    parallel: int = 2
    rounds: int = 3
    rate_limit: int = 200
    budget: str | None = None
    task_budget: str | None = None
    resolve_attempts: int = 1


@dataclass(slots=True)
class LocalSettings:
    model_path: str | None = None
    threads: int | None = None
    context: int = 8192
    max_output_tokens: int = 1024
    # Past this many tokens an answer is steered to end (0: never; None: half the output cap).
    end_after: int | None = None
    tool_steps: int = 1
    engine: str = "llama_cpp"  # or "torch": our own engine (local_backend/torch_engine)
    attention: str = "dense"  # the torch engine's: dense, msa, or one per layer


@dataclass(slots=True)
class ComputerSettings:
    """The ``computer`` tool ([computer] in the config; mcode/computer). ``display`` is the X
    display it acts on: None means ``DISPLAY``; ``mcode exec --virtual-display`` sets it to the
    Xvfb it started."""

    enabled: bool = False
    keep_screenshots: int = 3  # the newest tool screenshots each request carries
    settle_delay: float = 0.5  # seconds between the last action and the screenshot after it
    image_format: str = "png"
    monitor: int = 1
    display: str | None = None


@dataclass(slots=True)
class Settings:
    """Everything resolved. ``api_key`` never leaves this object except into an HTTP header."""

    workspace: Path
    provider: str
    provider_reason: str
    preset: ProviderPreset
    model: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    thinking: bool | None = None
    max_output_tokens: int = 32_000  # per model call, where the API needs a cap
    thinking_budget: int = 16_000  # Anthropic-style thinking budget, below max_output_tokens
    permission_mode: str = "ask"
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    add_dirs: list[str] = field(default_factory=list)
    allow_outside: bool = False
    max_turns: int | None = None  # model calls per turn; None: no cap
    context_window: int = 128_000
    network: NetworkSettings = field(default_factory=NetworkSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    team: TeamSettings = field(default_factory=TeamSettings)
    bash_timeout: float = 120.0
    output_cap: int = 30_000
    pass_env: list[str] = field(default_factory=list)  # credentials tools' processes may see
    sources: list[str] = field(default_factory=list)
    approval_timeout: float = 300.0  # seconds an asked permission waits for its answer
    # The workspace is a trusted folder (mcode/trust.py): its project config and AGENTS.md apply.
    trusted: bool = False
    # What an untrusted workspace asked for and did not get: widening keys, "AGENTS.md".
    project_ignored: list[str] = field(default_factory=list)
    computer: ComputerSettings = field(default_factory=ComputerSettings)
    # What the commands tools start may touch (mcode/tools/sandbox.py).
    sandbox_mode: str = DEFAULT_SANDBOX
    sandbox_network: bool = False
    # Run limits (mcode/agent/run_limits.py): seconds, input+output tokens, USD; None: none.
    max_time: float | None = None
    max_tokens: int | None = None
    max_cost: float | None = None

    @property
    def secrets(self) -> list[str]:
        return [self.api_key] if self.api_key else []


def config_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mcode"


def data_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("MCODE_DATA_DIR"):
        return Path(env["MCODE_DATA_DIR"])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcode"


def flag_settings(args: Any) -> dict[str, Any]:
    """The settings the command line's session flags give (``mcode exec``, the TUI; see
    ``mcode.cli.add_session_flags``), as :func:`load_settings` takes them; a flag a command
    does not have reads as not given."""
    given = {name: getattr(args, name, None) for name in _FLAG_KEYS}
    add_dirs = getattr(args, "add_dir", None)
    return {
        **{key: given[name] for name, key in _FLAG_KEYS.items()},
        "permissions.add_dirs": add_dirs or None,
    }


# argparse's attribute -> the settings key it sets.
_FLAG_KEYS = {
    "provider": "provider",
    "model": "model",
    "base_url": "base_url",
    "thinking": "thinking",
    "permission_mode": "permission_mode",
    "max_turns": "max_turns",
    "context_window": "context_window",
    "approval_timeout": "approval_timeout",
    # mcode exec's team flags (on main since the team merge; None here until then).
    "parallel": "team.parallel",
    "team_rounds": "team.rounds",
    "rate_limit": "team.rate_limit",
    "team_budget": "team.budget",
    "task_budget": "team.task_budget",
    # mcode exec's sandbox and run limits.
    "sandbox": "sandbox.mode",
    "max_time": "budget.max_time",
    "max_tokens": "budget.max_tokens",
    "max_cost": "budget.max_cost",
}


def load_settings(
    workspace: Path,
    flags: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Resolve settings for ``workspace``. ``flags`` uses the dotted keys of the files
    (``{"provider": "openai", "max_turns": 3}``); ``None`` values are ignored."""
    from mcode.prompts import AGENTS_FILES
    from mcode.trust import is_trusted

    env = dict(os.environ) if env is None else env
    check_environment(env)
    trusted = is_trusted(workspace, env)
    values: dict[str, Any] = {}
    sources: list[str] = []
    held: list[str] = []  # widening keys of an untrusted project file
    for path, is_project in (
        (config_home(env) / "config.toml", False),
        (workspace / ".mcode" / "config.toml", True),
    ):
        if path.exists():  # a folder or an unreadable file there is an error, not ignored
            file_values = _read_file(path, is_project)
            if is_project and not trusted:
                file_values, held = _narrowing_only(file_values, values)
            if is_project:  # trusted or not: files in the repository are the model's to write
                file_values, held_sandbox = _sandbox_narrowing_only(file_values, values)
                held += held_sandbox
            values.update(file_values)
            sources.append(str(path))
    explicit: set[str] = set()  # keys set by the environment or a flag, not by a file
    for key, kind in _KEYS.items():
        name = env_name(key)
        if env.get(name):
            where = f"environment variable {name}"
            value = _check_range(key, _coerce(env[name], kind, where), where)
            values[key] = _check_choice(key, value, where)
            explicit.add(key)
    for provider in PRESETS:  # [providers.NAME] keys: MCODE_PROVIDERS_MINIMAX_REGION=cn
        for leaf, kind in _PROVIDER_KEYS.items():
            key = f"providers.{provider}.{leaf}"
            name = env_name(key)
            if env.get(name):
                where = f"environment variable {name}"
                value = _coerce(env[name], kind, where)
                _check_provider_value(key, value, where)
                values[key] = value
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = value
            explicit.add(key)
    settings = _build(workspace, values, env, sources, explicit)
    settings.trusted = trusted
    # Only what would have taken effect: a flag that sets the key anyway overrides the project.
    settings.project_ignored = [k for k in held if k not in explicit]
    if not trusted:
        settings.project_ignored += [n for n in AGENTS_FILES if (workspace / n).is_file()]
    return settings


# Claude Code's model aliases, as its agent files write them: Anthropic's models.
CLAUDE_ALIASES = {
    "sonnet": "claude-sonnet-4-5",
    "opus": "claude-opus-4-1",
    "haiku": "claude-haiku-4-5",
}


def model_settings(settings: Settings, model: str) -> Settings | None:
    """The settings for another model in ``settings``' session (an agent role's ``model``), or
    None where that is the session's own. ``MODEL`` runs on the session's provider;
    ``PRESET:MODEL`` (``anthropic:claude-opus-4-1``) on that provider, its key, URL and window
    resolved as for a session of its own (environment and config files; not the session's
    flags, which are for its own provider). Claude Code's aliases (``sonnet``, ``opus``,
    ``haiku``) are Anthropic's models on the anthropic provider, and the session's model on any
    other (a Claude agent file brought to another provider keeps working). ConfigError when the
    other provider cannot be used (its key is not set), and under ``--max-cost`` for a model
    priced otherwise than the session's: the run's cost is kept at one price, never guessed."""
    chosen = _model_settings(settings, model)
    if chosen is not None and settings.max_cost is not None:
        from mcode.providers.prices import price_of

        if price_of(chosen.model) != price_of(settings.model):
            raise ConfigError(
                f"--max-cost keeps the run's cost at {settings.model}'s price, and "
                f"{chosen.model} is priced otherwise (or its price is not known)",
                hint="limit tokens instead (--max-tokens N), or leave model out of the role",
            )
    return chosen


def _model_settings(settings: Settings, model: str) -> Settings | None:
    preset, sep, name = model.partition(":")
    if sep and preset in PRESETS and name:
        if preset != settings.provider:
            other = load_settings(settings.workspace, {"provider": preset, "model": name})
            return dataclasses.replace(
                settings,
                provider=other.provider,
                provider_reason=f"an agent role's model {model!r}",
                preset=other.preset,
                model=other.model,
                base_url=other.base_url,
                api_key=other.api_key,
                api_key_env=other.api_key_env,
                thinking=other.thinking,
                max_output_tokens=other.max_output_tokens,
                thinking_budget=other.thinking_budget,
                context_window=other.context_window,
                local=other.local,
            )
        model = name
    if model.lower() in CLAUDE_ALIASES:
        if settings.preset.name != "anthropic":
            return None
        model = CLAUDE_ALIASES[model.lower()]
    return None if model == settings.model else dataclasses.replace(settings, model=model)


def _narrowing_only(
    project: dict[str, Any], before: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """An untrusted project file's values without those that widen what tools may do (given
    ``before``, the values of the layers below it), and the keys dropped. Narrowing values
    apply: a lower permission mode, ``allow_outside = false``, empty lists; deny rules are
    added to the user's, never replace them (``deny = []`` must not lift a user's deny)."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in project.items():
        if key == "permissions.deny":
            kept[key] = list(dict.fromkeys([*before.get(key, []), *value]))
            continue
        if key == "permission_mode":
            # An unknown name is kept, so that _build reports it like any bad value.
            below = before.get("permission_mode", "ask")
            known = value in PERMISSION_MODES and below in PERMISSION_MODES
            rank = PERMISSION_MODES.index
            widens = known and rank(value) > rank(below)
        elif key == "model":
            widens = value.endswith(".gguf") or Path(value).expanduser().is_dir()
        elif key in WIDENING_KEYS:
            widens = bool(value)  # a non-empty list, allow_outside = true, any model file
        else:
            widens = False
        if widens:
            dropped.append(key)
        else:
            kept[key] = value
    return kept, dropped


def _sandbox_narrowing_only(
    project: dict[str, Any], before: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """A project file's values without sandbox keys that widen it, and the keys dropped. Even a
    trusted folder's file may only narrow the sandbox: the model writes files in the workspace,
    and a sandbox it could lift by writing one would be none."""
    kept = dict(project)
    dropped: list[str] = []
    mode = project.get("sandbox.mode")
    if mode in SANDBOX_MODES:
        below = before.get("sandbox.mode", DEFAULT_SANDBOX)
        rank = SANDBOX_MODES.index
        if below in SANDBOX_MODES and rank(mode) > rank(below):
            dropped.append("sandbox.mode")
            del kept["sandbox.mode"]
    if project.get("sandbox.network") and not before.get("sandbox.network", False):
        dropped.append("sandbox.network")
        del kept["sandbox.network"]
    return kept, dropped


def env_name(key: str) -> str:
    """The environment variable of a dotted key: ``network.max_retries`` ->
    ``MCODE_NETWORK_MAX_RETRIES``."""
    return "MCODE_" + key.upper().replace(".", "_")


def known_env_names() -> set[str]:
    """Every ``MCODE_`` variable mcode reads."""
    names = set(ENV_ONLY)
    names.update(env_name(key) for key in _KEYS)
    names.update(env_name(f"providers.{p}.{leaf}") for p in PRESETS for leaf in _PROVIDER_KEYS)
    return names


def check_environment(env: Mapping[str, str]) -> None:
    """Raise ConfigError for an ``MCODE_`` variable mcode does not read (a typo would otherwise
    be ignored in silence), naming the closest known one."""
    known = known_env_names()
    unknown = sorted(n for n in env if n.startswith("MCODE_") and n not in known)
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(
        f"unknown environment variable {name}"
        + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
        hint=f"{guess}MCODE_ variables are config keys in capitals with _ for dots "
        f"(MCODE_NETWORK_MAX_RETRIES); unset {name} if it is not meant for mcode",
    )


def _read_file(path: Path, is_project: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"{path}: not valid TOML: {e}", hint="fix the line it names, or move the file away"
        ) from None
    out: dict[str, Any] = {}
    # The plugin host's tables ([hooks], [mcp_servers], [plugins]) have shapes of their own
    # (Claude Code's); mcode/plugin_host/sources.py reads and checks them.
    doc = {k: v for k, v in doc.items() if k not in ("hooks", "mcp_servers", "plugins")}
    for key, value in _flatten(doc):
        where = _where(path, text, key)
        if key.startswith("providers."):
            parts = key.split(".")
            if len(parts) != 3 or parts[1] not in PRESETS or parts[2] not in _PROVIDER_KEYS:
                raise ConfigError(
                    f"{where}: unknown key {key!r}",
                    hint=f"[providers.NAME] takes {', '.join(_PROVIDER_KEYS)}; NAME is one of "
                    f"{', '.join(PRESETS)}",
                )
            kind = _PROVIDER_KEYS[parts[2]]
            leaf = parts[2]
        elif key in _KEYS:
            kind = _KEYS[key]
            leaf = key
        else:
            raise ConfigError(
                f"{where}: unknown key {key!r}",
                hint=f"known keys: {', '.join(sorted(_KEYS))}, providers.NAME.*",
            )
        if is_project and leaf in _PROJECT_FORBIDDEN:
            raise ConfigError(
                f"{where}: {key!r} cannot be set in a project config",
                hint=(
                    "set it in your user config or with --base-url"
                    if leaf == "base_url"
                    else "set it in your user config"
                )
                + ": a repository must not choose where your API key is sent",
            )
        if is_project and key == "tools.pass_env":
            raise ConfigError(
                f"{where}: {key!r} cannot be set in a project config",
                hint="set it in your user config or MCODE_TOOLS_PASS_ENV: a repository must not "
                "hand your credentials to the commands its model runs",
            )
        value = _check_type(value, kind, f"{where}: {key!r}")
        if key.startswith("providers."):
            _check_provider_value(key, value, where)
        value = _check_range(key, value, f"{where}: {key!r}")
        out[key] = _check_choice(key, value, where)
    return out


def _check_choice(key: str, value: Any, where: str) -> Any:
    """``value`` if ``key`` takes any value or this one is among its choices."""
    if key not in _CHOICES:
        return value
    what, choices = _CHOICES[key]
    if value not in choices:
        raise ConfigError(
            f"{where}: unknown {what} {value!r}", hint=f"use one of: {', '.join(choices)}"
        )
    return value


def _check_provider_value(key: str, value: Any, where: str) -> None:
    """Raise ConfigError unless ``value`` is valid for ``providers.NAME.LEAF`` ``key``."""
    _, name, leaf = key.split(".")
    if leaf in ("region", "api"):
        preset = PRESETS[name]
        known = tuple(preset.regions or ("global",)) if leaf == "region" else preset.apis
        if value not in known:
            raise ConfigError(f"{where}: {key!r} must be one of {', '.join(known)}, not {value!r}")
    if leaf == "reasoning_replay" and value not in REPLAY_MODES:
        raise ConfigError(
            f"{where}: {key!r} must be one of {', '.join(REPLAY_MODES)}, not {value!r}"
        )
    if _PROVIDER_KEYS[leaf] == "int" and value <= 0:
        raise ConfigError(f"{where}: {key!r} must be above 0, not {value!r}")


def _flatten(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            items.extend(_flatten(v, key + "."))
        else:
            items.append((key, v))
    return items


def _where(path: Path, text: str, dotted: str) -> str:
    """'file:line' for a dotted key, found by scanning table headers and assignments."""
    *tables, leaf = dotted.split(".")
    table = ".".join(tables)
    current = ""
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]$", s)
        if header:
            current = header.group(1).replace(" ", "")
            continue
        m = re.match(r"^([A-Za-z0-9_.\-\"]+)\s*=", s)
        if not m:
            continue
        key = m.group(1).replace('"', "")
        full = f"{current}.{key}" if current else key
        if full == dotted or (current == table and key == leaf):
            return f"{path}:{n}"
    return str(path)


def _check_type(value: Any, kind: str, where: str) -> Any:
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list) and all(isinstance(x, str) for x in value),
        "thinking": isinstance(value, bool) or value in ("on", "off"),
    }[kind]
    if not ok:
        expected = {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "list": "a list of strings",
            "thinking": '"on", "off", true or false',
        }[kind]
        raise ConfigError(f"{where} must be {expected}, not {value!r}")
    return float(value) if kind == "float" else value


def read_limits(text: str) -> dict[str, int | float]:
    """A budget's limits: ``turns=40,tokens=200000,seconds=600`` (any of them, each above 0).
    ValueError (its argument the part that cannot be read) otherwise."""
    values: dict[str, int | float] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        try:
            if not sep or key not in LIMIT_NAMES:
                raise ValueError
            values[key] = float(value) if key == "seconds" else int(value)
            if not values[key] > 0 or not math.isfinite(values[key]):
                raise ValueError
        except ValueError:
            raise ValueError(part.strip()) from None
    return values


def _check_range(key: str, value: Any, where: str) -> Any:
    """``value`` if it is in range for ``key``: numbers are finite and above 0 (0 allowed for
    the keys in _ZERO_OK); a budget's limits are readable (read_limits)."""
    if key in _LIMIT_KEYS and value:
        try:
            read_limits(value)
        except ValueError as e:
            raise ConfigError(
                f"{where}: cannot read {e.args[0]!r} in {value!r}",
                hint="write turns=N,tokens=N,seconds=S (any of them, each above 0)",
            ) from None
    if _KEYS.get(key) not in ("int", "float"):
        return value
    zero_ok = key in _ZERO_OK
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{where} must be {'0 or more' if zero_ok else 'above 0'}, not {value!r}")
    return value


def _coerce(raw: str, kind: str, where: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "list":
            return [x.strip() for x in raw.split(",") if x.strip()]
        if kind == "thinking":
            return _check_type(raw.lower(), kind, where)
        return raw
    except ValueError:
        raise ConfigError(f"{where} must be {kind}, not {raw!r}") from None


def _thinking(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return value == "on"


def resolve_provider(values: dict[str, Any], env: dict[str, str]) -> tuple[str, str]:
    """Which provider, and why (one sentence for the session.started event)."""
    if values.get("provider"):
        name = values["provider"]
        if name not in PRESETS:
            raise ConfigError(
                f"unknown provider {name!r}", hint=f"use one of: {', '.join(PRESETS)}"
            )
        return name, "named in the configuration or on the command line"
    for name in ("minimax", "anthropic", "openai"):
        key_env = PRESETS[name].api_key_env
        if key_env and env.get(key_env):
            return name, f"{key_env} is set"
    return "local", "no API key is set, so the embedded local model runs"


def _local_model_path(name: str, embedded: str) -> str | None:
    """The GGUF (or, for the torch engine, the model folder) a local ``--model`` names: None for
    the embedded model, else a path (checked, magic bytes and all, when the engine is made). A
    bare name that is no file is refused."""
    if name in (embedded, f"{embedded}.Q4_1"):
        return None
    if Path(name).expanduser().exists() or "/" in name or name.endswith(".gguf"):
        return name
    raise ConfigError(
        f"the local provider runs GGUF files: model {name!r} is neither the embedded model "
        f"({embedded}) nor a path to a .gguf file",
        hint="drop --model to run the embedded model, give --model PATH/TO/model.gguf, or name "
        "the provider that serves it (--provider openai, anthropic or minimax, with its API key)",
    )


def _build(
    workspace: Path,
    values: dict[str, Any],
    env: dict[str, str],
    sources: list[str],
    explicit: frozenset[str] | set[str] = frozenset(),
) -> Settings:
    provider, reason = resolve_provider(values, env)
    per = {
        k.split(".", 2)[2]: v for k, v in values.items() if k.startswith(f"providers.{provider}.")
    }
    base = PRESETS[provider]
    custom_url = (
        values.get("base_url")
        or per.get("base_url")
        or (env.get(base.base_url_env) if base.base_url_env else None)
    )
    try:
        preset = resolve_preset(
            provider, api=per.get("api"), region=per.get("region"), base_url=custom_url
        )
    except ValueError as e:
        raise ConfigError(f"[providers.{provider}]: {e}") from None
    if per.get("reasoning_replay"):
        preset = dataclasses.replace(preset, reasoning_replay=per["reasoning_replay"])
    if "think_in_prompt" in per:
        preset = dataclasses.replace(preset, think_in_prompt=per["think_in_prompt"])

    mode = values.get("permission_mode", "ask")
    if mode not in PERMISSION_MODES:
        raise ConfigError(
            f"unknown permission mode {mode!r}", hint=f"use one of: {', '.join(PERMISSION_MODES)}"
        )

    api_key_env = per.get("api_key_env") or preset.api_key_env
    api_key = env.get(api_key_env) if api_key_env else None
    base_url = custom_url or preset.base_url
    if api_key_env and not api_key and not custom_url:
        # The provider's own API always wants a key: say so now, not after a 401 and retries.
        # (A custom base URL, e.g. a local vLLM, may need none.)
        raise ConfigError(
            f"the {provider} provider needs an API key in {api_key_env}, which is not set",
            hint=f"export {api_key_env}=..., or give --base-url for a server that needs no key",
        )
    # --model (or MCODE_MODEL) first; then [providers.NAME] model, which is more specific than
    # a top-level model in a file (that one may name another provider's model).
    if "model" in explicit:
        model = values["model"]
    else:
        model = per.get("model") or values.get("model") or preset.default_model
    local = LocalSettings(
        model_path=values.get("local.model"),
        threads=values.get("local.threads"),
        context=values.get("local.context", 8192),
        max_output_tokens=values.get("local.max_output_tokens", 1024),
        end_after=values.get("local.end_after"),
        tool_steps=values.get("local.tool_steps", 1),
        engine=values.get("local.engine", "llama_cpp"),
        attention=values.get("local.attention", "dense"),
    )
    if provider == "local":
        # A file's top-level model may name another provider's model: only --model,
        # MCODE_MODEL or [providers.local] model choose the local one.
        chosen = values["model"] if "model" in explicit else per.get("model")
        if chosen:
            local.model_path = _local_model_path(chosen, preset.default_model)
    facts = model_facts(model)
    window = values.get("context_window") or (
        local.context if provider == "local" else facts.context_window
    )
    thinking = _thinking(values.get("thinking"))
    if thinking is None and facts.thinking_switchable:
        thinking = preset.thinking_default  # sent explicitly where endpoints' defaults differ
    team = TeamSettings(
        parallel=values.get("team.parallel", 2),
        rounds=values.get("team.rounds", 3),
        rate_limit=values.get("team.rate_limit", 200),
        budget=values.get("team.budget"),
        task_budget=values.get("team.task_budget"),
        resolve_attempts=values.get("team.resolve_attempts", 1),
    )
    for key in ("max_turns", "context_window", "local.context", "tools.output_cap"):
        if key in values and values[key] <= 0:
            raise ConfigError(f"{key} must be a positive number, not {values[key]!r}")

    network = NetworkSettings()
    for key, value in values.items():
        if key.startswith("network."):
            setattr(network, key.split(".", 1)[1], value)

    return Settings(
        workspace=workspace,
        provider=provider,
        provider_reason=reason,
        preset=preset,
        model=model,
        base_url=base_url,
        api_key=api_key,
        api_key_env=api_key_env,
        thinking=thinking,
        max_output_tokens=per.get("max_output_tokens") or facts.max_output_tokens,
        thinking_budget=per.get("thinking_budget", 16_000),
        permission_mode=mode,
        allow=list(values.get("permissions.allow", [])),
        deny=list(values.get("permissions.deny", [])),
        add_dirs=list(values.get("permissions.add_dirs", [])),
        allow_outside=bool(values.get("permissions.allow_outside", False)),
        max_turns=values.get("max_turns"),
        context_window=window,
        network=network,
        local=local,
        team=team,
        bash_timeout=values.get("tools.bash_timeout", 120.0),
        output_cap=values.get("tools.output_cap", 30_000),
        pass_env=list(values.get("tools.pass_env", [])),
        sources=sources,
        approval_timeout=values.get("approval_timeout", 300.0),
        computer=ComputerSettings(
            enabled=bool(values.get("computer.enabled", False)),
            keep_screenshots=values.get("computer.keep_screenshots", 3),
            settle_delay=values.get("computer.settle_delay", 0.5),
            image_format=values.get("computer.image_format", "png"),
            monitor=values.get("computer.monitor", 1),
        ),
        sandbox_mode=values.get("sandbox.mode", DEFAULT_SANDBOX),
        sandbox_network=bool(values.get("sandbox.network", False)),
        max_time=values.get("budget.max_time"),
        max_tokens=values.get("budget.max_tokens"),
        max_cost=values.get("budget.max_cost"),
    )
