"""Skills: folders with a ``SKILL.md`` (Claude Code's), whose name and description are in the
system prompt and whose body is read only when the model asks for it with the ``skill`` tool.

    skills/pdf-forms/SKILL.md      front matter (name, description), then the body
    skills/pdf-forms/reference.md  read with skill(name="pdf-forms", file="reference.md")

The prompt grows by one line per skill; the bodies (often long) cost nothing until used. The
tool reads files fresh, so an edited skill is what the next call gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mcode.errors import ToolError
from mcode.frontmatter import read_document
from mcode.tools.base import Tool, ToolContext, ToolResult

SKILL_KEYS = ("name", "description", "license", "allowed-tools", "metadata", "version")
FILE_CAP = 100_000


@dataclass(frozen=True, slots=True)
class Skill:
    name: str
    description: str
    folder: Path
    plugin: str


def load_skills(folder: Path, plugin: str) -> tuple[list[Skill], list[str]]:
    """The skills in ``folder`` (each a subfolder with SKILL.md), and the problems found."""
    if not folder.is_dir():
        return [], []
    skills: list[Skill] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*/SKILL.md")):
        doc = read_document(path, SKILL_KEYS)
        problems += doc.problems
        name = str(doc.meta.get("name") or path.parent.name)
        description = str(doc.meta.get("description") or "").strip()
        if not description:
            problems.append(
                f"{path}: front matter: description is missing (the model picks a "
                "skill by it); the skill was not loaded"
            )
            continue
        skills.append(Skill(name, " ".join(description.split()), path.parent, plugin))
    return skills, problems


def prompt_section(skills: list[Skill]) -> str:
    """The system prompt's list of skills ("" when there are none)."""
    if not skills:
        return ""
    lines = [f"- {s.name}: {s.description}" for s in skills]
    return (
        "Skills (instructions for particular tasks; when one fits, load it with the skill tool "
        "before you start):\n" + "\n".join(lines)
    )


class SkillTool(Tool):
    name = "skill"
    description = (
        "Load a skill's instructions (SKILL.md) by name, or another file of the skill's "
        "folder with file. The skills are listed in the system prompt."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "the skill's name"},
            "file": {"type": "string", "description": "a file of the skill, e.g. reference.md"},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    permission = "read"

    def __init__(self, skills: list[Skill]) -> None:
        self.skills = {s.name: s for s in skills}

    def subject(self, args: dict[str, Any]) -> str:
        return str(args.get("name", ""))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        skill = self.skills.get(str(args["name"]))
        if skill is None:
            raise ToolError(
                f"there is no skill named {args['name']!r}; the skills are: "
                f"{', '.join(self.skills) or 'none'}"
            )
        wanted = args.get("file") or "SKILL.md"
        path = (skill.folder / str(wanted)).resolve()
        if skill.folder.resolve() not in path.parents:
            raise ToolError(f"{wanted!r} is not a file of the skill {skill.name}")
        if not path.is_file():
            files = sorted(
                str(p.relative_to(skill.folder)) for p in skill.folder.rglob("*") if p.is_file()
            )
            raise ToolError(
                f"the skill {skill.name} has no file {wanted!r}; it has: {', '.join(files)}"
            )
        if wanted == "SKILL.md":
            text = read_document(path, SKILL_KEYS).body
            others = sorted(
                str(p.relative_to(skill.folder))
                for p in skill.folder.rglob("*")
                if p.is_file() and p.name != "SKILL.md"
            )
            if others:
                text += "\n\nFiles of this skill (read them with skill and file): " + ", ".join(
                    others
                )
        else:
            text = path.read_text(encoding="utf-8", errors="replace")[:FILE_CAP]
        return ToolResult(text, f"skill {skill.name}" + (f": {wanted}" if args.get("file") else ""))
