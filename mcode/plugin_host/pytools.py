"""Python tools from plugins: ``"module:attr"`` or ``"file.py:attr"`` in a manifest, and the
``mcode.tools`` entry-point group of installed packages.

``attr`` is a :class:`~mcode.tools.base.Tool` subclass (made with no arguments) or a function
taking the plugin's settings (a dict, ``[plugins.NAME]`` in the config) and returning a list of
tools. A tool that cannot be loaded, or whose name is taken, is a problem naming where it came
from; the others still load.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from mcode.plugin_host.probe import ENTRY_POINT_GROUP
from mcode.tools.base import Tool

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def load_tool_refs(
    refs: list[str], root: Path, plugin: str, settings: dict[str, Any]
) -> tuple[list[Tool], list[str]]:
    tools: list[Tool] = []
    problems: list[str] = []
    for ref in refs:
        where = f"plugin {plugin}: tool {ref!r}"
        try:
            target = _resolve(ref, root, plugin)
            made = _make(target, settings)
        except Exception as e:  # a plugin's bug must not stop the session
            problems.append(f"{where}: could not be loaded ({type(e).__name__}: {e})")
            continue
        for tool in made:
            problem = check_tool(tool, where)
            if problem:
                problems.append(problem)
            else:
                tools.append(tool)
    return tools, problems


def load_entry_points(
    refs: list[tuple[str, str]], settings: dict[str, dict[str, Any]]
) -> tuple[list[Tool], list[str]]:
    """The tools installed packages offer under the ``mcode.tools`` entry-point group."""
    from importlib.metadata import EntryPoint

    tools: list[Tool] = []
    problems: list[str] = []
    for name, value in refs:
        ep = EntryPoint(name, value, ENTRY_POINT_GROUP)
        where = f"entry point {ep.name} ({ep.value})"
        try:
            made = _make(ep.load(), settings.get(ep.name, {}))
        except Exception as e:
            problems.append(f"{where}: could not be loaded ({type(e).__name__}: {e})")
            continue
        for tool in made:
            problem = check_tool(tool, where)
            if problem:
                problems.append(problem)
            else:
                tools.append(tool)
    return tools, problems


def check_tool(tool: Any, where: str) -> str:
    if not isinstance(tool, Tool):
        return f"{where}: {tool!r} is not an mcode Tool"
    for attr in ("name", "description", "parameters", "permission"):
        if not hasattr(tool, attr):
            return f"{where}: the tool has no {attr}"
    if not _NAME.fullmatch(tool.name):
        return f"{where}: tool name {tool.name!r} must be letters, digits, _ or - (at most 64)"
    if tool.permission not in ("read", "edit", "execute", "computer"):
        return f"{where}: permission {tool.permission!r} is not read, edit, execute or computer"
    return ""


def _resolve(ref: str, root: Path, plugin: str) -> Any:
    module_name, _, attr = ref.rpartition(":")
    if module_name.endswith(".py"):
        path = (root / module_name).resolve()
        if root.resolve() not in path.parents:
            raise ValueError(f"{module_name} is outside the plugin's folder")
        unique = f"mcode_plugin_{re.sub(r'[^A-Za-z0-9_]', '_', plugin)}_{path.stem}"
        spec = importlib.util.spec_from_file_location(unique, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, attr)


def _make(target: Any, settings: dict[str, Any]) -> list[Any]:
    if inspect.isclass(target):
        return [target()]
    if callable(target):
        made = target(settings)
        return list(made) if isinstance(made, list | tuple) else [made]
    return [target]
