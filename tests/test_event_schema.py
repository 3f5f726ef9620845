"""The event schema is one thing in three places: the payload classes (mcode/events.py), the
README's table (rendered from them by tests/event_schema.py) and the values the code emits (the
closed sets, as Literals)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
import re
import types
import typing
from pathlib import Path

import event_schema

import mcode
from mcode import events as ev
from mcode.errors import LimitReached, MCodeError, ProviderError


def test_the_readme_table_is_the_one_rendered_from_the_payload_classes() -> None:
    readme = event_schema.readme_table(event_schema.README.read_text())
    assert readme == event_schema.table(), (
        "README.md's event schema is not what mcode/events.py says: run "
        "`python tests/event_schema.py` and commit README.md"
    )


def _literal_values(hint: object) -> tuple[str, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(v for a in typing.get_args(hint) for v in _literal_values(a))
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()


def test_every_value_of_a_closed_set_is_documented_with_its_field() -> None:
    found = event_schema.docs()
    for cls in ev.PAYLOADS.values():
        hints = typing.get_type_hints(cls)
        _, field_docs = found[cls.__name__]
        for f in dataclasses.fields(cls):
            for value in _literal_values(hints[f.name]):
                doc = field_docs.get(f.name, "")
                assert re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", doc), (
                    f"{cls.TYPE}.{f.name}: {value!r} is not in its docstring"
                )


def test_each_class_is_named_for_its_type() -> None:
    for name, cls in ev.PAYLOADS.items():
        camel = "".join(part.capitalize() for part in re.split(r"[._]", name))
        assert (cls.__name__, cls.TYPE) == (camel, name)
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
        assert "__slots__" in cls.__dict__


def _all_modules() -> list[Path]:
    """Import every module under mcode/ (so every error class exists) and return the files."""
    for info in pkgutil.walk_packages(mcode.__path__, "mcode."):
        if not info.name.endswith(".__main__"):
            importlib.import_module(info.name)
    return sorted(Path(mcode.__file__).parent.rglob("*.py"))


def _subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in {sub, *_subclasses(sub)}}


def test_the_closed_sets_hold_every_value_the_code_emits() -> None:
    files = _all_modules()
    from mcode.permissions import PermissionMode
    from mcode.tools.base import PermissionClass

    error_kinds = set(typing.get_args(ev.ErrorKind))
    provider_kinds = set(typing.get_args(ev.ProviderErrorKind))
    assert set(typing.get_args(ev.RetryKind)) <= provider_kinds <= error_kinds
    # The kinds ProviderError's docstring lists (outside its parentheses), no more, no fewer.
    listed = (ProviderError.__doc__ or "").split("``kind`` is one of:")[1].split("``retryable``")[0]
    listed = re.sub(r"\([^)]*\)", "", listed)
    assert provider_kinds == {word.strip(" .\n") for word in listed.split(",")}
    assert typing.get_args(ev.Permission) == typing.get_args(PermissionClass)
    assert set(typing.get_args(ev.PermissionModeName)) == {m.value for m in PermissionMode}
    # A turn ended by an mcode error names it by kind (provider) or by class (the others).
    named = {c.__name__ for c in _subclasses(MCodeError) | {MCodeError}}
    named -= {c.__name__ for c in _subclasses(ProviderError) | {ProviderError}}
    # These end a turn as limit / loop (a team's BudgetHit is a LimitReached).
    named -= {"LimitReached", "LoopStopped", "BudgetHit"}
    assert LimitReached.__name__ not in error_kinds
    assert named <= error_kinds, named - error_kinds

    # Constants the code passes as an error's or a retry's kind, a decision's `by`, or a turn's
    # outcome: each is in its Literal (the typed call sites are also checked by mypy).
    emitted: dict[str, set[str]] = {"kind": set(), "by": set(), "outcome": set()}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg in ("kind", "by") and isinstance(kw.value, ast.Constant):
                        emitted[kw.arg].add(kw.value.value)
                callee = node.func.attr if isinstance(node.func, ast.Attribute) else None
                callee = node.func.id if isinstance(node.func, ast.Name) else callee
                by = node.args[2] if callee == "Answer" and len(node.args) == 3 else None
                if isinstance(by, ast.Constant):
                    emitted["by"].add(by.value)
                if callee == "TurnOutcome" and isinstance(node.args[0], ast.Constant):
                    emitted["outcome"].add(node.args[0].value)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "kind"
                        and isinstance(value, ast.Constant)
                    ):
                        emitted["kind"].add(value.value)
    assert emitted["kind"] and emitted["kind"] <= error_kinds, emitted["kind"] - error_kinds
    decided = set(typing.get_args(ev.DecidedBy))
    assert emitted["by"] and emitted["by"] <= decided, emitted["by"] - decided
    reasons = set(typing.get_args(ev.TurnReason))
    assert emitted["outcome"] and emitted["outcome"] <= reasons, emitted["outcome"] - reasons
