"""Whether a session has anything for the plugin host to load, answered with a few ``stat``
calls and no imports beyond the standard library's, so that a session with nothing configured
(the common case: every ``mcode exec`` in CI) pays for neither the plugin host's modules nor
its discovery.

Something is there when a config file has a ``[hooks]``, ``[mcp_servers]`` or ``[plugins]``
table, a plugin folder exists (user or project), a project has ``.mcp.json`` or Claude Code's
``.claude/`` commands, agents, skills or settings, the user has ``~/.claude/`` commands,
agents or skills, ``mcode plugins enable`` switched a plugin on, or an installed package
offers ``mcode.tools`` entry points. Untrusted project files count too: the plugin host says
that it ignored them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path

ENTRY_POINT_GROUP = "mcode.tools"
_TABLE = re.compile(r"^\s*\[\[?\s*(hooks|mcp_servers|plugins)\b", re.MULTILINE)


def configured(workspace: Path, config_dir: Path, home: Path, data_dir: Path | None) -> bool:
    for config in (config_dir / "config.toml", workspace / ".mcode" / "config.toml"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if _TABLE.search(config.read_text(encoding="utf-8")):
                return True
    for folder in (config_dir / "plugins", workspace / ".mcode" / "plugins"):
        with contextlib.suppress(OSError):
            if any(p.is_dir() for p in folder.iterdir()):
                return True
    if (workspace / ".mcp.json").exists():
        return True
    claude = workspace / ".claude"
    names = ("commands", "agents", "skills", "settings.json", "settings.local.json")
    if any((claude / n).exists() for n in names):
        return True
    if any((home / ".claude" / n).is_dir() for n in names[:3]):
        return True
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((config_dir / "plugins.json").read_text())
        if any(v is True for v in state.get("plugins", {}).values()):
            return True
    cache = None if data_dir is None else data_dir / "entry-points.json"
    return bool(entry_point_refs(cache))


def entry_point_refs(cache: Path | None) -> list[tuple[str, str]]:
    """``(name, "module:attr")`` of every ``mcode.tools`` entry point installed. Scanning the
    installed distributions costs ~0.3 s on a busy machine, so the answer is kept in ``cache``
    under the modification times of the folders on ``sys.path`` (installing or removing a
    package changes its folder's), and scanned again only when one of them changed."""
    stamp = []
    for entry in sys.path:
        with contextlib.suppress(OSError):
            stamp.append([entry, os.stat(entry or ".").st_mtime_ns])
    if cache is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            kept = json.loads(cache.read_text())
            if kept.get("stamp") == stamp:
                return [(n, v) for n, v in kept["refs"]]
    from importlib.metadata import entry_points

    refs = sorted((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))
    if cache is not None:
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"stamp": stamp, "refs": refs}))
            os.replace(tmp, cache)
    return refs
