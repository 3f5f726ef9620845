"""README.md's event schema table, rendered from the payload classes in mcode/events.py.

    python tests/event_schema.py          # rewrite the table in README.md
    python tests/event_schema.py --check  # exit 1 when README.md's table is not the rendered one

One row per event type, in the order of ``PAYLOADS``: the fields in the order they are written,
each with the docstring written under it in mcode/events.py (read from the source, so the
documentation sits next to the field it describes), then the class's own docstring.
tests/test_event_schema.py fails when the table and the classes part ways.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

from mcode import events as ev

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN = "<!-- event schema: rendered from mcode/events.py by `python tests/event_schema.py` -->"
END = "<!-- end of event schema -->"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def docs() -> dict[str, tuple[str, dict[str, str]]]:
    """Per payload class name: its docstring and each field's docstring (the string literal
    right under the field), both as written in mcode/events.py."""
    tree = ast.parse(Path(ev.__file__).read_text())
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields: dict[str, str] = {}
        for stmt, after in zip(node.body, [*node.body[1:], None], strict=True):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                fields[stmt.target.id] = _one_line(after.value.value)
        found[node.name] = (_one_line(ast.get_docstring(node) or ""), fields)
    return found


def row(cls: type[ev.Payload], doc: str, field_docs: dict[str, str]) -> str:
    parts = []
    for f in dataclasses.fields(cls):
        text = f"`{f.name}`"
        if f.name in field_docs:
            text += f" ({field_docs[f.name]})"
        parts.append(text)
    cell = ", ".join(parts) or "—"
    if doc:
        cell += f". {doc}"
    return f"| `{cls.TYPE}` | {cell} |"


def table() -> str:
    found = docs()
    lines = [BEGIN, "| type | data |", "| --- | --- |"]
    for cls in ev.PAYLOADS.values():
        doc, field_docs = found[cls.__name__]
        lines.append(row(cls, doc, field_docs))
    lines.append(END)
    return "\n".join(lines)


def readme_table(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def main() -> int:
    text = README.read_text()
    if "--check" in sys.argv[1:]:
        return 0 if readme_table(text) == table() else 1
    README.write_text(text.replace(readme_table(text), table()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
