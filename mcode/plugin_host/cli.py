"""``mcode plugins list|enable|disable``: which plugins this folder's sessions load, and the
switch for each (recorded in ``plugins.json`` in the config folder; ``[plugins] enabled`` /
``disabled`` in a config file still win over it)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mcode.errors import MCodeError, UsageError

if TYPE_CHECKING:
    from mcode.plugin_host.host import Contents


def main(args: argparse.Namespace) -> int:
    from mcode.config import check_environment, config_home
    from mcode.plugin_host.host import read_contents
    from mcode.trust import is_trusted

    try:
        check_environment(os.environ)
        workspace = Path(args.cwd or os.getcwd()).expanduser().resolve()
        config_dir = config_home()
        contents = read_contents(
            workspace, config_dir, trusted=is_trusted(workspace), with_tools=False
        )
        if args.action == "list":
            return _list(contents)
        return _switch(contents, config_dir, args.name, on=args.action == "enable")
    except MCodeError as e:
        print(f"mcode: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"mcode: {e.hint}", file=sys.stderr)
        return e.exit_code


def _list(contents: Contents) -> int:
    enabled = {p.name for p in contents.discovered.enabled}
    if not contents.discovered.plugins:
        print("no plugins found")
    for plugin in contents.discovered.plugins:
        state = "on " if plugin.name in enabled else "off"
        parts = [
            f"{len(cs)} {what}"
            for what, cs in (
                ("commands", [c for c in contents.commands if c.plugin == plugin.name]),
                ("skills", [s for s in contents.skills if s.plugin == plugin.name]),
                ("roles", [r for r in contents.roles if r.origin == f"plugin {plugin.name}"]),
            )
            if cs
        ]
        if plugin.tools:
            parts.append(f"{len(plugin.tools)} tool modules")
        extra = f" ({', '.join(parts)})" if parts else ""
        print(f"{state}  {plugin.name:<16} {plugin.source:<8} {plugin.description}{extra}")
    for ignored in contents.ignored:
        print(f"ignored (folder not trusted; `mcode trust` to load it): {ignored}")
    for problem in contents.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0


def _switch(contents: Contents, config_dir: Path, name: str | None, *, on: bool) -> int:
    from mcode.plugin_host.discovery import write_state

    names = [p.name for p in contents.discovered.plugins]
    if not name:
        raise UsageError("name the plugin", hint=f"the plugins are: {', '.join(names) or 'none'}")
    if name not in names:
        raise UsageError(
            f"there is no plugin named {name!r}",
            hint=f"the plugins are: {', '.join(names) or 'none'}",
        )
    path = write_state(config_dir, name, on)
    print(f"{name} {'enabled' if on else 'disabled'} (recorded in {path})")
    return 0
