"""Turning a request (system prompt, history, tools) into the prompt text a local model reads.

SmolLM2 and most small instruct models speak ChatML::

    <|im_start|>system
    You are ... (the agent's system prompt, then a compact list of the tools)<|im_end|>
    <|im_start|>user
    List the files.<|im_end|>
    <|im_start|>assistant
    <tool_call>{"name": "ls", "arguments": {"path": "."}}</tool_call><|im_end|>
    <|im_start|>user
    Result of ls(path="."):
    README.md<|im_end|>
    <|im_start|>assistant

Choices made for a 135M model: tool results come back as a ``user`` turn that says which call
they answer (tiny models have rarely seen a ``tool`` role); calls in history are written exactly
as the grammar makes the model write them; thinking is dropped; a user image is refused.

The prompt is a list of :class:`Segment` so that markup (``<|im_start|>``) is tokenized as control
tokens while the conversation's own text never is: a file that contains ``<|im_end|>`` cannot end
a turn. A GGUF whose embedded chat template is not ChatML is rendered with that template (Jinja).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mcode.errors import ProviderError
from mcode.messages import ImagePart, Message, ToolCall, ToolSpec

from .grammar import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, format_tool_call

DEFAULT_SYSTEM = "You are a helpful assistant."
# An 8K window cannot hold a 30K-character tool output. Clipping here (the same way every time,
# so the prompt prefix stays stable) keeps a run going instead of overflowing on every step.
MAX_TOOL_RESULT_CHARS = 6000
_DESCRIPTION_CHARS = 160
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of prompt text. ``special`` segments are template markup and may contain control
    tokens; other segments are content and are tokenized as plain text."""

    text: str
    special: bool = False


def describe_tools(tools: Sequence[ToolSpec]) -> str:
    """The tools block appended to the system prompt: the output format, then one line per
    tool (``name(arg: type, opt?: type): first sentence of the description``). Kept compact
    because the whole system part must fit in a fraction of an 8K window."""
    lines = [
        "# Tools",
        "To use a tool, reply with only the call, in exactly this form:",
        f'{TOOL_CALL_OPEN}{{"name": "TOOL", "arguments": {{...}}}}{TOOL_CALL_CLOSE}',
        "You will get the result, then you may call another tool or answer in plain text.",
        "When no tool is needed, answer in plain text.",
        "",
    ]
    for tool in tools:
        lines.append(f"- {tool.name}({_signature(tool.parameters)}): {_first_sentence(tool)}")
    return "\n".join(lines)


def conversation(
    system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
) -> list[tuple[str, str]]:
    """The request as ``(role, content)`` turns with roles system/user/assistant only.

    Raises ProviderError(kind="bad_request") for an image in a user message: the local model
    has no image input.
    """
    system_text = system.strip() or DEFAULT_SYSTEM
    if tools:
        system_text = f"{system_text}\n\n{describe_tools(tools)}"
    turns = [("system", system_text)]
    calls: dict[str, ToolCall] = {}
    for message in messages:
        if message.role == "assistant":
            calls.update((c.id, c) for c in message.tool_calls)
            rendered = [format_tool_call(c.name, c.arguments) for c in message.tool_calls]
            # The text as produced, unstripped: a sampled answer then re-tokenizes exactly.
            content = "\n".join(x for x in (message.text, *rendered) if x)
            turns.append(("assistant", content))
        elif message.role == "tool":
            turns.append(("user", _tool_result(message, calls.get(message.tool_call_id or ""))))
        else:
            if any(isinstance(p, ImagePart) for p in message.parts):
                raise ProviderError(
                    "the local model has no image input",
                    kind="bad_request",
                    retryable=False,
                    hint="remove the image, or set an API key to use a remote model that "
                    "accepts images (MiniMax M3)",
                )
            turns.append(("user", message.text))
    return turns


def render_chatml(turns: Sequence[tuple[str, str]]) -> list[Segment]:
    """ChatML with the assistant's turn opened, ready for generation."""
    segments: list[Segment] = []
    for role, content in turns:
        segments.append(Segment(f"<|im_start|>{role}\n", special=True))
        segments.append(Segment(content))
        segments.append(Segment("<|im_end|>\n", special=True))
    segments.append(Segment("<|im_start|>assistant\n", special=True))
    return segments


def is_chatml(template: str | None) -> bool:
    """Whether a GGUF's ``tokenizer.chat_template`` is ChatML (or absent: ChatML is the most
    common format for small models, and ours)."""
    return template is None or "<|im_start|>" in template


def render_jinja(
    template: str, turns: Sequence[tuple[str, str]], *, bos_token: str, eos_token: str
) -> list[Segment]:
    """Render with a GGUF's own Jinja chat template (one segment: its markup cannot be told
    apart from content). Consecutive turns of one role are merged, and the system prompt is
    folded into the first user turn if the template refuses a system role, since many
    templates insist on strict user/assistant alternation."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    compiled = env.from_string(template)
    merged = _merge_roles(turns)
    attempts = [merged, _fold_system(merged)]
    last_error: Exception | None = None
    for attempt in attempts:
        try:
            text = compiled.render(
                messages=[{"role": r, "content": c} for r, c in attempt],
                add_generation_prompt=True,
                bos_token=bos_token,
                eos_token=eos_token,
                raise_exception=raise_exception,
            )
            return [Segment(text, special=True)]
        except TemplateError as e:
            last_error = e
    raise ProviderError(
        f"the model's chat template cannot render this conversation: {last_error}",
        kind="bad_request",
        retryable=False,
        hint="use a GGUF with a ChatML chat template",
    )


def _merge_roles(turns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[tuple[str, str]] = []
    for role, content in turns:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]}\n\n{content}")
        else:
            merged.append((role, content))
    return merged


def _fold_system(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not turns or turns[0][0] != "system":
        return turns
    system, rest = turns[0][1], turns[1:]
    if rest and rest[0][0] == "user":
        return [("user", f"{system}\n\n{rest[0][1]}"), *rest[1:]]
    return [("user", system), *rest]


def _tool_result(message: Message, call: ToolCall | None) -> str:
    name = message.name or (call.name if call else "tool")
    head = f"{'Error from' if message.is_error else 'Result of'} {name}"
    if call is not None:
        head += f"({_short_arguments(call.arguments)})"
    body = message.text
    if any(isinstance(p, ImagePart) for p in message.parts):
        body += "\n[image omitted: this model cannot see images]"
    body = _clip(body.strip()) or "(no output)"
    return f"{head}:\n{body}"


def _short_arguments(raw: str, limit: int = 100) -> str:
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        args = None
    if isinstance(args, dict):
        text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    else:
        text = raw
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(text: str, limit: int = MAX_TOOL_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3) :]
    return f"{head}\n[… {len(text) - len(head) - len(tail)} characters cut …]\n{tail}"


def _signature(schema: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties", {}) or {}
    required = set(schema.get("required", []))
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {_type_name(sub)}" for name, sub in props.items()
    )


def _type_name(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    if kind == "array":
        return f"{_type_name(schema.get('items', {}) or {})}[]"
    if kind == "object" and schema.get("properties"):
        return "{" + _signature(schema) + "}"
    return str(kind) if kind else "any"


def _first_sentence(tool: ToolSpec) -> str:
    text = " ".join(tool.description.split())
    # A sentence ends at . ! or ? before a capital letter: "e.g. `*.py`" does not end one.
    text = _SENTENCE_END.split(text, maxsplit=1)[0]
    return text if len(text) <= _DESCRIPTION_CHARS else text[: _DESCRIPTION_CHARS - 1] + "…"


__all__ = [
    "DEFAULT_SYSTEM",
    "Segment",
    "conversation",
    "describe_tools",
    "is_chatml",
    "render_chatml",
    "render_jinja",
]
