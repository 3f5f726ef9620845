"""The OpenAI Chat Completions wire, server side: a request body in, checked, as mcode's own
types; the response and stream chunks out.

    {"model", "messages": [system | developer | user | assistant (+tool_calls) | tool],
     "tools": [{"type": "function", "function": {name, description, parameters}}],
     "tool_choice": "auto" | "none" | "required" | {"type": "function", "function": {"name"}},
     "stream", "stream_options": {"include_usage"}, "max_tokens" | "max_completion_tokens",
     "temperature", "top_p", "seed", "n", "stop": str | [str, ...] (up to 4),
     "logprobs": bool, "top_logprobs": 0..20}

Every rejection is a :class:`RequestError` carrying OpenAI's error fields (``message``, ``type``,
``param``, ``code``) and an HTTP status; a field this server does not know is ignored, as
OpenAI-compatible servers do.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from mcode.messages import ImagePart, Message, TextPart, ToolCall, ToolSpec

from .llama_engine import Generated
from .logprobs import TokenLogprob


class RequestError(Exception):
    """A request the server will not run: ``status`` and OpenAI's error object."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(slots=True)
class ChatRequest:
    model: str
    system: str
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str | None = None  # as ModelRequest: auto, none, required, or a tool's name
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0


def parse_body(raw: bytes) -> ChatRequest:
    """Parse and check a request body; raise RequestError saying what is wrong."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(
            f"the request body is not valid JSON: {e}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required (see GET /v1/models)", param="model")
    system, messages = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    req = ChatRequest(model=model, system=system, messages=messages, tools=tools)
    req.tool_choice = _tool_choice(body.get("tool_choice"), tools)
    req.stream = _bool(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    req.include_usage = bool(options.get("include_usage"))
    n = body.get("n", 1)
    if n != 1:
        raise RequestError(
            f"n={n!r}: this server generates one choice per request (n must be 1)", param="n"
        )
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not _is_int(value) or value < 1:
            raise RequestError(f"'{key}' must be a positive integer, not {value!r}", param=key)
        req.max_tokens = value
        break
    req.temperature = _number(body, "temperature", 1.0, low=0.0, high=2.0)
    req.top_p = _number(body, "top_p", 1.0, low=0.0, high=1.0, open_low=True)
    seed = body.get("seed", 0)
    if seed is None:
        seed = 0
    if not _is_int(seed):
        raise RequestError(f"'seed' must be an integer, not {seed!r}", param="seed")
    req.seed = seed
    req.stop = _stop(body.get("stop"))
    req.logprobs = _bool(body, "logprobs")
    top = body.get("top_logprobs")
    if top is not None:
        if not _is_int(top) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise RequestError(
                f"'top_logprobs' must be an integer from 0 to {MAX_TOP_LOGPROBS}, not {top!r}",
                param="top_logprobs",
            )
        if not req.logprobs:
            raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        req.top_logprobs = top
    return req


MAX_STOPS = 4  # OpenAI's limits
MAX_TOP_LOGPROBS = 20


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(stops, list)
        or not 1 <= len(stops) <= MAX_STOPS
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise RequestError(
            f"'stop' must be a non-empty string or an array of 1 to {MAX_STOPS} non-empty "
            f"strings, not {raw!r}",
            param="stop",
        )
    return tuple(dict.fromkeys(stops))


def _messages(raw: Any) -> tuple[str, list[Message]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    system: list[str] = []
    out: list[Message] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object", param=where)
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text(m.get("content"), where))
        elif role == "user":
            out.append(Message(role="user", parts=_user_parts(m.get("content"), where)))
        elif role == "assistant":
            text = _text(m.get("content"), where) if m.get("content") is not None else ""
            out.append(
                Message(
                    role="assistant",
                    parts=(TextPart(text),) if text else (),
                    tool_calls=_calls(m.get("tool_calls"), where),
                )
            )
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise RequestError(
                    f"{where}: a tool message needs 'tool_call_id'", param=f"{where}.tool_call_id"
                )
            text = _text(m.get("content"), where)
            out.append(Message(role="tool", parts=(TextPart(text),), tool_call_id=call_id))
        else:
            raise RequestError(
                f"{where}: unknown role {role!r} (system, developer, user, assistant, tool)",
                param=f"{where}.role",
            )
    return "\n\n".join(system), out


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise RequestError(
                    f"{where}: only text parts are accepted here", param=f"{where}.content"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise RequestError(f"{where}: 'content' must be a string or an array of parts", param=where)


def _user_parts(content: Any, where: str) -> tuple[TextPart | ImagePart, ...]:
    if not isinstance(content, list):
        return (TextPart(_text(content, where)),)
    parts: list[TextPart | ImagePart] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(TextPart(str(part.get("text", ""))))
        elif kind == "image_url":
            # Kept so that the chat layer refuses it with its own message (no image input).
            url = str((part.get("image_url") or {}).get("url", ""))
            parts.append(ImagePart(media_type="image/*", data="", source=url))
        else:
            raise RequestError(f"{where}: unknown content part {kind!r}", param=f"{where}.content")
    return tuple(parts)


def _calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RequestError(f"{where}.tool_calls must be an array", param=f"{where}.tool_calls")
    calls = []
    for j, c in enumerate(raw):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RequestError(
                f"{where}.tool_calls[{j}] needs function.name", param=f"{where}.tool_calls"
            )
        arguments = fn.get("arguments") or ""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            ToolCall(id=str(c.get("id") or f"call_{j}"), name=fn["name"], arguments=arguments)
        )
    return tuple(calls)


def _tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RequestError("'tools' must be an array", param="tools")
    tools = []
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) and t.get("type") == "function" else None
        if not isinstance(fn, dict):
            raise RequestError(
                f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}",
                param=f"tools[{i}]",
            )
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError(f"tools[{i}].function.name is required", param=f"tools[{i}]")
        parameters = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise RequestError(
                f"tools[{i}] ({name}): 'parameters' must be a JSON schema object",
                param=f"tools[{i}].function.parameters",
            )
        tools.append(ToolSpec(name, str(fn.get("description") or ""), parameters))
    return tools


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> str | None:
    if raw is None or raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = (raw.get("function") or {}).get("name")
        if name in {t.name for t in tools}:
            return str(name)
        raise RequestError(
            f"tool_choice names {name!r}, which is not one of the request's tools",
            param="tool_choice",
        )
    raise RequestError(
        "tool_choice must be 'auto', 'none', 'required' or "
        '{"type": "function", "function": {"name": ...}}',
        param="tool_choice",
    )


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"'{key}' must be true or false, not {value!r}", param=key)
    return value


def _number(
    body: dict[str, Any],
    key: str,
    default: float,
    *,
    low: float,
    high: float,
    open_low: bool = False,
) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"'{key}' must be a number, not {value!r}", param=key)
    if value < low or value > high or (open_low and value == low):
        lo = "(" if open_low else "["
        raise RequestError(f"'{key}' is {value}; it must be in {lo}{low}, {high}]", param=key)
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- responses ------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:16]}"


def usage(result: Generated) -> dict[str, Any]:
    """OpenAI's usage object; ``cached_tokens`` always present, 0 included."""
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
    }


def logprobs(entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """A choice's ``logprobs`` object (None when the request did not ask)."""
    if entries is None:
        return None
    return {"content": [e.wire() for e in entries], "refusal": None}


def chunk(
    id_: str,
    model: str,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    *,
    token_logprobs: list[TokenLogprob] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` makes the usage-only chunk (no choices);
    ``token_logprobs`` the log-probabilities of the tokens in ``delta``."""
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if token_logprobs is not None:
        choice["logprobs"] = logprobs(token_logprobs)
    choices = [] if delta is None else [choice]
    return {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
