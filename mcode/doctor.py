"""``mcode doctor``: what works here, one line per part, each with what to do about it.

    ok    config    /home/me/.config/mcode/config.toml, ./.mcode/config.toml
    fail  sandbox   the sandbox cannot start: bubblewrap ('bwrap') is not installed ...
          -> install bubblewrap (apt-get install bubblewrap), or ...

Every check asks the real thing: the sandbox runs bwrap with the session's own flags on
``true`` (:func:`mcode.tools.sandbox.problem`), the store opens the database, ripgrep and git
answer ``--version``. Nothing is installed or downloaded (the store's database is created if it
is missing, as any run would); the llama.cpp crash check is only read from its cache (running
it loads the model). ``ok`` works, ``warn`` works with less
(a fallback, a part that is off), ``fail`` stops something mcode does. Exit 0 when nothing
failed, 1 otherwise; ``--json`` prints ``{"ok": bool, "checks": [{"name", "status",
"detail", "hint"}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mcode.errors import MCodeError

if TYPE_CHECKING:
    from mcode.config import Settings

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""


def run_checks(workspace: Path, env: dict[str, str] | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    env = dict(os.environ) if env is None else env
    settings, config = _config(workspace, env)
    return [
        config,
        _sandbox(workspace, settings, env),
        _tool("ripgrep", "rg", "the grep tool uses a slower Python search", "ripgrep"),
        _tool("git", "git", "checkpoints of git repositories and git commands fail", "git"),
        _display(env),
        _models(settings, config, env),
        _store(env),
        _trust(workspace, settings, env),
    ]


def _config(workspace: Path, env: dict[str, str]) -> tuple[Settings | None, Check]:
    from mcode.config import config_home, load_settings

    files = [config_home(env) / "config.toml", workspace / ".mcode" / "config.toml"]
    present = [str(f) for f in files if f.exists()]
    try:
        settings = load_settings(workspace, env=env)
    except MCodeError as e:
        return None, Check("config", "fail", e.message, e.hint)
    shown = ", ".join(present) if present else "no config files (defaults; " + str(files[0]) + ")"
    return settings, Check("config", "ok", f"every layer parses: {shown}")


def _sandbox(workspace: Path, settings: Settings | None, env: dict[str, str]) -> Check:
    from mcode.tools.sandbox import SandboxPolicy, describe, policy_for, problem

    if settings is not None:
        policy = policy_for(settings, env)
    else:  # the config is broken: check the default sandbox on this folder
        policy = SandboxPolicy(writable=(workspace,), bwrap=env.get("MCODE_BWRAP") or "bwrap")
    if not policy.active:
        return Check(
            "sandbox",
            "warn",
            describe(policy),
            "choose --sandbox workspace-write (or [sandbox] mode) to confine commands",
        )
    failure = problem(policy)
    if failure is not None:
        return Check("sandbox", "fail", failure.message, failure.hint)
    return Check("sandbox", "ok", f"{_version(policy.bwrap)}; {describe(policy)}")


def _version(binary: str) -> str:
    """The first line ``BINARY --version`` prints, or the binary's name."""
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return binary
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else binary


def _tool(name: str, binary: str, without: str, package: str) -> Check:
    path = shutil.which(binary)
    if path is None:
        return Check(
            name, "warn", f"{binary} is not on PATH: {without}", f"apt-get install {package}"
        )
    return Check(name, "ok", f"{_version(path)} ({path})")


def _display(env: dict[str, str]) -> Check:
    display = env.get("DISPLAY")
    missing = [b for b in ("xdotool",) if shutil.which(b) is None]
    xvfb = shutil.which("Xvfb")
    if display and not missing:
        return Check("display", "ok", f"DISPLAY={display}, xdotool found (computer use can run)")
    what = f"DISPLAY={display}" if display else "no DISPLAY"
    need = f"; {', '.join(missing)} not installed" if missing else ""
    if xvfb and not display:
        hint = "run under a virtual screen: Xvfb :99 & export DISPLAY=:99"
    else:
        hint = "for computer use: apt-get install xvfb xdotool, then Xvfb :99 & DISPLAY=:99"
    return Check("display", "warn", f"{what}{need}: the computer tool cannot run", hint)


def _models(settings: Settings | None, config: Check, env: dict[str, str]) -> Check:
    if settings is None:
        return Check(
            "models", "fail", "no provider can be chosen: the config is broken", config.hint
        )
    chosen = f"{settings.provider}/{settings.model} ({settings.provider_reason})"
    if settings.provider != "local":
        return Check("models", "ok", f"{chosen}, at {settings.base_url}")
    from mcode.config import data_home
    from mcode.local_backend.embedded import embedded_model_path, require_llama_cpp
    from mcode.local_backend.probe import cached_verdict

    try:
        require_llama_cpp()
        path = Path(settings.local.model_path) if settings.local.model_path else None
        path = path.expanduser() if path is not None else embedded_model_path()
    except MCodeError as e:
        return Check("models", "fail", f"{chosen}: {e.message}", e.hint)
    if not path.is_file():
        return Check("models", "fail", f"{chosen}: no model file at {path}", "check [local] model")
    verdict = cached_verdict(path, data_home(env))
    if verdict is None:
        said = "the llama.cpp crash check has not run yet (it runs on first use)"
    elif verdict == "ok":
        said = "the llama.cpp crash check passed"
    else:
        return Check(
            "models",
            "fail",
            f"{chosen}: {path.name} crashed llama.cpp on this CPU ({verdict})",
            "rebuild llama-cpp-python for a generic CPU (CMAKE_ARGS='-DGGML_NATIVE=OFF'), or "
            "set an API key to use a remote model",
        )
    return Check("models", "ok", f"{chosen}; model {path}; {said}")


def _store(env: dict[str, str]) -> Check:
    from mcode.config import data_home
    from mcode.store import Store

    path = data_home(env) / "sessions.db"
    try:
        Store(path).close()
    except MCodeError as e:
        return Check("store", "fail", e.message, e.hint)
    return Check("store", "ok", f"{path} opens and is writable")


def _trust(workspace: Path, settings: Settings | None, env: dict[str, str]) -> Check:
    from mcode.trust import trusted_root

    try:
        root = trusted_root(workspace, env)
    except MCodeError as e:  # a damaged trust record
        return Check("trust", "fail", e.message, e.hint or "move the damaged trust.json away")
    if root is not None:
        return Check("trust", "ok", f"{workspace} is trusted (through {root})")
    ignored = settings.project_ignored if settings is not None else []
    if ignored:
        return Check(
            "trust",
            "warn",
            f"{workspace} is not trusted, so its {', '.join(ignored)} do not take effect",
            "if you trust its files, run `mcode trust` here",
        )
    return Check("trust", "ok", f"{workspace} is not trusted (nothing here needs it)")


def main(args: argparse.Namespace) -> int:
    workspace = Path(args.cwd or os.getcwd()).expanduser().resolve()
    if not workspace.is_dir():
        print(f"mcode: error: --cwd {workspace}: no such folder", file=sys.stderr)
        return 2
    checks = run_checks(workspace)
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=1))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{c.status:<5} {c.name:<{width}}  {c.detail}")
            if c.hint and c.status != "ok":
                print(f"{'':<5} {'':<{width}}  -> {c.hint}")
    return 1 if failed else 0
