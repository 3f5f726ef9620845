"""A scripted model for team tests: one callable step that answers per role.

The scripted server (tests/model_server.py) takes steps that may be callables of the request
body; a team's requests arrive concurrently and in no fixed order, so every step is the same
:class:`TeamModel`, which reads who is asking from the request itself (the role's name in the
system prompt's first line, the task id in the first user message) and hands a :class:`Req` to
the test's function for that role::

    model = TeamModel(planner=plan_two, producer=write_file, verifier=run_and_pass)
    with ScriptedServer([model] * 200) as server: ...

Each role function returns a step dict (``say(...)``, ``call(...)``; ``delay`` works as in
any step).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_ids = itertools.count(1)
_lock = threading.Lock()


def say(text: str, **more: Any) -> dict[str, Any]:
    return {"text": text, **more}


def call(name: str, arguments: dict[str, Any], **more: Any) -> dict[str, Any]:
    with _lock:
        n = next(_ids)
    return {"tool_calls": [{"id": f"call_{n}", "name": name, "arguments": arguments}], **more}


def task(
    task_id: str,
    instructions: str,
    checks: list[tuple[str, int]] | None = None,
    depends_on: tuple[str, ...] = (),
    title: str | None = None,
) -> dict[str, Any]:
    return {
        "id": task_id,
        "title": title or f"task {task_id}",
        "instructions": instructions,
        "depends_on": list(depends_on),
        "checks": [{"command": c, "expect": {"exit_code": e}} for c, e in (checks or [])],
    }


def plan(*tasks: dict[str, Any], reopen: tuple[str, ...] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"stages": [{"name": "work", "tasks": list(tasks)}]}
    if reopen:
        body["reopen"] = list(reopen)
    return body


@dataclass
class Req:
    """One request as a role sees it."""

    body: dict[str, Any]
    role: str
    task_id: str | None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.body.get("messages", []) if m.get("role") != "system"]

    @property
    def step(self) -> int:
        """Model calls this conversation made before this one."""
        return sum(1 for m in self.messages if m["role"] == "assistant")

    def user_texts(self) -> list[str]:
        return [_text(m) for m in self.messages if m["role"] == "user"]

    @property
    def last(self) -> dict[str, Any]:
        return self.messages[-1]

    @property
    def last_tool(self) -> str | None:
        """The content of the last message if it is a tool result."""
        m = self.last
        return _text(m) if m["role"] == "tool" else None

    @property
    def after_user(self) -> int:
        """Model calls since the last user message (0: answering a fresh user message)."""
        n = 0
        for m in reversed(self.messages):
            if m["role"] == "user":
                return n
            n += m["role"] == "assistant"
        return n

    @property
    def round(self) -> int:
        """A producer's round: 1 + the revision requests it was sent."""
        return 1 + sum("did not accept your work" in t for t in self.user_texts())


def _text(m: dict[str, Any]) -> str:
    content = m.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


Role = Callable[[Req], dict[str, Any]]


class TeamModel:
    """The step callable; ``calls`` lists (role, task id) per request, in arrival order."""

    def __init__(
        self, *, planner: Role, producer: Role, verifier: Role, resolver: Role | None = None
    ) -> None:
        self.roles = {
            "PLANNER": planner,
            "PRODUCER": producer,
            "VERIFIER": verifier,
            "RESOLVER": resolver or (lambda req: say("I leave the conflict as it is")),
        }
        self.calls: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        system = next((_text(m) for m in body.get("messages", []) if m.get("role") == "system"), "")
        match = re.match(r"You are (?:the|a) (PLANNER|PRODUCER|VERIFIER|RESOLVER)\b", system)
        if match is None:
            return say("not a team request")
        role = match.group(1)
        first_user = next((_text(m) for m in body["messages"] if m.get("role") == "user"), "")
        found = re.search(r"^Task id: (\S+)$", first_user, re.M)
        req = Req(body, role.lower(), found.group(1) if found else None)
        with self._lock:
            self.calls.append((req.role, req.task_id))
        return self.roles[role](req)


def planner_giving(*plans: dict[str, Any]) -> Role:
    """A planner that gives ``plans[0]`` first, ``plans[1]`` at the first re-plan, ..."""

    def planner(req: Req) -> dict[str, Any]:
        if req.after_user == 0:
            asked = sum("added a requirement" in t for t in req.user_texts())
            return call("plan", plans[min(asked, len(plans) - 1)])
        return say("planned")

    return planner


def verifier_running(command: str, *, verdict: str | None = None) -> Role:
    """A verifier that runs ``command`` and cites it truthfully: PASS if it exited 0 (or
    ``verdict``), FAIL with the output as the finding otherwise."""

    def verifier(req: Req) -> dict[str, Any]:
        if req.step == 0:
            return call("bash", {"command": command})
        if req.step == 1:
            out = req.last_tool or ""
            code = 0
            status = re.search(r"exit code (\d+)\s*$", out)
            if status:
                code = int(status.group(1))
            first = out.strip().splitlines()[0] if out.strip() else ""
            name = verdict or ("PASS" if code == 0 else "FAIL")
            return call(
                "verdict",
                {
                    "verdict": name,
                    "evidence": [{"command": command, "exit_code": code, "output": first}],
                    "findings": [] if name == "PASS" else [f"`{command}` failed: {out[-300:]}"],
                },
            )
        return say("verified")

    return verifier


def dumps(value: Any) -> str:
    return json.dumps(value)
