"""A scripted model server speaking OpenAI Chat Completions and Anthropic Messages: a test double
for remote model APIs.

A real HTTP/1.1 server on 127.0.0.1 (stdlib, daemon thread) that answers each
``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` or ``/anthropic/v1/messages``
(Anthropic) with the next step of one shared script, in that route's real wire format: SSE with
chunked transfer encoding when the request says ``"stream": true``, one JSON body otherwise.
``GET /v1/models`` lists the configured model names. ``base_url`` is the OpenAI base
(``.../v1``), ``anthropic_base_url`` the Anthropic one (the client appends ``/v1/messages``).

    with ScriptedServer([{"text": "Hello"}]) as server:
        run_mcode("--base-url", server.base_url)
        assert server.requests[0].body["messages"][-1]["content"] == "hi"

A step is a dict (or a callable taking the request body and returning one):

answer       ``text``, ``thinking``, ``thinking_style`` (``reasoning_content`` default, ``reasoning``,
             ``reasoning_details``, ``think_tags``, ``both`` = think tags and reasoning_content in
             the same chunks, ``cumulative`` = reasoning_content resending all text so far,
             ``prompt_opened`` = only the closing ``</think>``, as when the chat template puts
             ``<think>`` in the prompt),
             ``tool_calls`` (``[{"id", "name", "arguments"}]``; arguments a dict, JSON-encoded
             here, or a raw string sent verbatim), ``repeat_tool_ids`` (repeat id and name on
             every fragment), ``usage`` (``prompt_tokens``, ``completion_tokens``,
             ``cached_tokens``; ``None`` sends no usage), ``finish_reason`` (override; ``None``
             sends none), ``chunk_size`` (overrides the server's), ``headers`` (extra response
             headers), ``base_resp`` (MiniMax status object, sent as a final chunk / in the body).
HTTP error   ``status``, ``headers``, ``body`` (dict sent as JSON, str sent as is).
faults       ``delay`` (seconds before answering), ``cut_after`` (send N SSE chunks, then drop the
             connection mid-body; with ``"cut_mode": "eof"`` end the body cleanly instead, still
             without finish or ``[DONE]``), ``stall_after`` + ``stall`` (pause that long after N
             chunks), ``gates`` (in-process only: ``[(N, threading.Event), ...]``, wait after N
             chunks until the test sets that event: a stream paused for exactly as long as the
             test needs), ``keepalive`` + ``keepalive_every`` (before the answer, N ``: keep-alive``
             comments, one every that many seconds, as proxies send while a model thinks),
             ``error_in_stream`` (an ``{"error": ...}`` chunk after the text).
raw          ``sse``: a list of chunks sent verbatim; a dict is sent as ``data: <json>\\n\\n``, a
             str exactly as given (to test comments, CRLF, malformed data), bytes as given (half
             a UTF-8 character, a gzip stream with ``headers: {"Content-Encoding": "gzip"}``).

Anthropic route: the same keys where they mean the same thing: ``text``, ``thinking`` (a
thinking block with a ``signature_delta``), ``tool_calls`` (``tool_use`` blocks, arguments streamed
in ``input_json_delta`` thirds), ``usage`` (``input_tokens``, ``output_tokens``,
``cache_read_input_tokens``, ``cache_creation_input_tokens``; the OpenAI names are accepted too;
``message_start`` carries input and cache counters, ``message_delta`` all counters again,
cumulatively, as the API does), ``finish_reason`` (the ``stop_reason``; ``None`` sends none),
``chunk_size``, ``headers``, ``status``/``body`` (without a body, an Anthropic-shaped error),
``delay``, ``cut_after``/``cut_mode`` and ``stall_after``/``stall`` (counted in SSE events),
``error_in_stream`` (an Anthropic error object, sent as ``event: error`` after the blocks),
``base_resp`` (a MiniMax status object, sent as a data-only event / in the body) and ``sse`` (raw;
a dict is sent as ``event: <its type>``). ``thinking_style`` and ``repeat_tool_ids`` are ignored.
New keys: ``signature`` (the thinking block's signature, ``None`` for none as MiniMax sends; by
default a fixed base64 string derived from the thinking text), ``redacted_thinking`` (a data string: a ``redacted_thinking`` block
after the thinking), ``prefill_text`` (true: the first text piece is also put in
``content_block_start`` and repeated by the first delta, as some servers do) and ``ping`` (true:
a ``ping`` event between blocks).

When the script runs out the server answers 500 ``script exhausted after N requests`` and sets
``exhausted``. ``python tests/model_server.py script.json`` serves a JSON script from the command
line and prints the port.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Step = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]

__all__ = ["RecordedRequest", "ScriptedServer", "Step"]


@dataclass(frozen=True)
class RecordedRequest:
    """One received model request (attributes or keys): the parsed JSON ``body`` (``None`` if it
    was not JSON), ``headers`` with lower-case names, the ``raw`` bytes, the route's ``path``,
    and the client's ``peer`` address (``host:port``; the same peer twice means a reused
    connection)."""

    body: Any
    headers: dict[str, str]
    raw: bytes
    path: str = "/v1/chat/completions"
    peer: str = ""
    received_at: float = field(default_factory=time.monotonic)

    def __getitem__(self, key: str) -> Any:
        """``record["body"]`` works as well as ``record.body``."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


class ScriptedServer:
    """See the module docstring. Thread-safe; ``start`` returns self."""

    def __init__(
        self,
        script: list[Step] | None = None,
        *,
        chunk_size: int = 64,
        models: tuple[str, ...] = ("mock-model",),
    ) -> None:
        self.chunk_size = chunk_size
        self.models = models
        self._script: list[Step] = list(script or [])
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._exhausted = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-model-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (what ``--base-url`` takes)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``http://127.0.0.1:PORT``: an Anthropic client appends ``/v1/messages``."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ script and records

    def push(self, *steps: Step) -> None:
        """Append steps to the script (e.g. while a test is running)."""
        with self._lock:
            self._script.extend(steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Model requests received so far (both wire formats), in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def bodies(self) -> list[Any]:
        """Just the JSON bodies of :attr:`requests`."""
        return [r.body for r in self.requests]

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def exhausted(self) -> bool:
        """Whether a request arrived after the script ran out."""
        with self._lock:
            return self._exhausted > 0

    def _next(self, record: RecordedRequest) -> tuple[Step | None, int]:
        with self._lock:
            self._requests.append(record)
            n = len(self._requests)
            if not self._script:
                self._exhausted += 1
                return None, n
            return self._script.pop(0), n


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client resetting a kept-alive connection while the server waits for its next request
        # is normal (a provider closing its pool); only real faults deserve a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _ClientGone(Exception):
    pass


_ROUTES = {
    "/v1/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/anthropic/v1/messages": "anthropic",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60  # an idle keep-alive connection is dropped after this
    # Each SSE chunk is its own send: with Nagle on, every streamed answer waited ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read records, not logs

    # ------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "owned_by": "scripted"}
                for m in self.server.owner.models
            ]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        wire = _ROUTES.get(self.path.partition("?")[0].rstrip("/"))
        if wire is None:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner = self.server.owner
        step, n = owner._next(
            RecordedRequest(body, headers, raw, self.path, "{}:{}".format(*self.client_address[:2]))
        )
        if step is None:
            self._json(
                500,
                {
                    "error": {
                        "message": f"script exhausted after {n - 1} requests",
                        "type": "script_exhausted",
                    }
                },
                {"X-Script-Exhausted": "1"},
            )
            return
        if callable(step):
            step = step(body if isinstance(body, dict) else {})
        try:
            self._answer(step, body if isinstance(body, dict) else {}, wire)
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, step: dict[str, Any], body: dict[str, Any], wire: str) -> None:
        if step.get("delay"):
            self._sleep(float(step["delay"]))
        if "status" in step:
            status = int(step["status"])
            default = (
                _anthropic_error_body(status)
                if wire == "anthropic"
                else {"error": {"message": f"scripted HTTP {status}"}}
            )
            self._send(status, step.get("body", default), step.get("headers"))
            return
        model = body.get("model") or "mock-model"
        size = int(step.get("chunk_size") or self.server.owner.chunk_size)
        if wire == "anthropic":
            if body.get("stream"):
                self._stream(step, _anthropic_events(step, model, size))
            else:
                self._send(200, _anthropic_message(step, model), step.get("headers"))
        elif body.get("stream"):
            self._stream(step, _sse_chunks(step, model, size))
        else:
            self._send(200, _completion(step, model), step.get("headers"))

    # ------------------------------------------------------------------ writing

    def _sleep(self, seconds: float) -> None:
        if self.server.owner._stopping.wait(seconds):
            raise _ClientGone()

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        ctype = "text/plain" if isinstance(payload, str) else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, step: dict[str, Any], chunks: list[str | bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (step.get("headers") or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        for _ in range(int(step.get("keepalive") or 0)):
            self._sleep(float(step.get("keepalive_every", 0.1)))
            self.wfile.write(b"%X\r\n%s\r\n" % (len(b": keep-alive\n\n"), b": keep-alive\n\n"))
            self.wfile.flush()
        cut = step.get("cut_after")
        stall_after = step.get("stall_after")
        for i, chunk in enumerate(chunks):
            if cut is not None and i >= cut:
                if step.get("cut_mode") == "eof":
                    break
                self.close_connection = True  # drop mid-body: no terminating chunk
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if stall_after is not None and i == stall_after:
                self._sleep(float(step.get("stall", 1.0)))
            for after, gate in step.get("gates") or ():
                if i == after:
                    self.wfile.flush()
                    while not gate.wait(0.05):
                        if self.server.owner._stopping.is_set():
                            raise _ClientGone()
            data = chunk if isinstance(chunk, bytes) else chunk.encode()
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


# ---------------------------------------------------------------------- OpenAI wire format


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []


def _args_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _usage(step: dict[str, Any]) -> dict[str, Any] | None:
    if "usage" in step and step["usage"] is None:
        return None
    u = dict(step.get("usage") or {})
    usage: dict[str, Any] = {
        "prompt_tokens": u.get("prompt_tokens", 10),
        "completion_tokens": u.get("completion_tokens", 5),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if "cached_tokens" in u:
        usage["prompt_tokens_details"] = {"cached_tokens": u["cached_tokens"]}
    return usage


def _finish(step: dict[str, Any]) -> str | None:
    if "finish_reason" in step:
        return step["finish_reason"]
    return "tool_calls" if step.get("tool_calls") else "stop"


def _chunk(
    model: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
) -> str:
    obj: dict[str, Any] = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
    }
    obj["choices"] = (
        [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    )
    obj.update(extra)
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"


def _sse_chunks(step: dict[str, Any], model: str, size: int) -> list[str | bytes]:
    if "sse" in step:
        return [
            c if isinstance(c, str | bytes) else "data: " + json.dumps(c) + "\n\n"
            for c in step["sse"]
        ]
    out = [_chunk(model, {"role": "assistant", "content": ""})]
    thinking, text = step.get("thinking", ""), step.get("text", "")
    style = step.get("thinking_style", "reasoning_content")
    if thinking and style == "think_tags":
        text = f"<think>{thinking}</think>\n\n{text}"
    elif thinking and style == "prompt_opened":
        text = f"{thinking}</think>\n\n{text}"
    elif thinking and style == "both":
        pieces = _pieces(thinking, size)
        for i, p in enumerate(pieces):
            inline = (
                ("<think>" if i == 0 else "") + p + ("</think>\n\n" if i == len(pieces) - 1 else "")
            )
            out.append(_chunk(model, {"reasoning_content": p, "content": inline}))
    elif thinking and style == "cumulative":
        so_far = ""
        for p in _pieces(thinking, size):
            so_far += p
            out.append(_chunk(model, {"reasoning_content": so_far}))
    elif thinking and style == "reasoning_details":
        for p in _pieces(thinking, size):
            out.append(
                _chunk(
                    model,
                    {
                        "reasoning_details": [
                            {
                                "type": "reasoning.text",
                                "id": "r1",
                                "format": "MiniMax-response-v1",
                                "index": 0,
                                "text": p,
                            }
                        ]
                    },
                )
            )
    elif thinking:
        for p in _pieces(thinking, size):
            out.append(_chunk(model, {style: p}))
    for p in _pieces(text, size):
        out.append(_chunk(model, {"content": p}))
    repeat = step.get("repeat_tool_ids", False)
    for i, call in enumerate(step.get("tool_calls") or ()):
        args = _args_text(call.get("arguments", {}))
        head = {"id": call.get("id", f"call_{i}"), "type": "function"}
        fn_head = {"name": call["name"]}
        index = call.get("index", i)
        out.append(
            _chunk(
                model,
                {
                    "tool_calls": [
                        {"index": index, **head, "function": {**fn_head, "arguments": ""}}
                    ]
                },
            )
        )
        third = max(1, -(-len(args) // 3))
        for frag in _pieces(args, third):
            tc: dict[str, Any] = {"index": index, "function": {"arguments": frag}}
            if repeat:
                tc = {"index": index, **head, "function": {**fn_head, "arguments": frag}}
            out.append(_chunk(model, {"tool_calls": [tc]}))
    if step.get("error_in_stream") is not None:
        out.append("data: " + json.dumps({"error": step["error_in_stream"]}) + "\n\n")
        return out
    if step.get("base_resp") is not None:
        out.append(_chunk(model, None, base_resp=step["base_resp"]))
        return out
    finish = _finish(step)
    if finish is not None:
        out.append(_chunk(model, {}, finish))
    usage = _usage(step)
    if usage is not None:
        out.append(_chunk(model, None, usage=usage))
    out.append("data: [DONE]\n\n")
    return out


def _completion(step: dict[str, Any], model: str) -> dict[str, Any]:
    if step.get("error_in_stream") is not None:
        return {"error": step["error_in_stream"]}
    if step.get("base_resp") is not None:
        return {"id": "chatcmpl-scripted", "base_resp": step["base_resp"]}
    text, thinking = step.get("text", ""), step.get("thinking", "")
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if thinking:
        if step.get("thinking_style") == "think_tags":
            message["content"] = f"<think>{thinking}</think>\n\n{text}"
        elif step.get("thinking_style") == "prompt_opened":
            message["content"] = f"{thinking}</think>\n\n{text}"
        else:
            message["reasoning_content"] = thinking
    if step.get("tool_calls"):
        message["tool_calls"] = [
            {
                "id": c.get("id", f"call_{i}"),
                "type": "function",
                "function": {"name": c["name"], "arguments": _args_text(c.get("arguments", {}))},
            }
            for i, c in enumerate(step["tool_calls"])
        ]
    out: dict[str, Any] = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(step)}],
    }
    usage = _usage(step)
    if usage is not None:
        out["usage"] = usage
    return out


# ---------------------------------------------------------------------- Anthropic wire format

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _anthropic_error_body(status: int) -> dict[str, Any]:
    etype = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": f"scripted HTTP {status}"}}


def _without_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _signature(step: dict[str, Any]) -> str | None:
    if "signature" in step:  # None: no signature at all, as MiniMax's endpoint sends thinking
        return None if step["signature"] is None else str(step["signature"])
    digest = hashlib.sha256(str(step.get("thinking", "")).encode()).digest()
    return "EqMBCkYIBxgCKkB" + base64.b64encode(digest).decode()


def _stop_reason(step: dict[str, Any]) -> str | None:
    if "finish_reason" in step:
        return step["finish_reason"]
    return "tool_use" if step.get("tool_calls") else "end_turn"


def _anthropic_usage(step: dict[str, Any]) -> dict[str, Any] | None:
    """All counters (cumulative, as ``message_delta`` carries them); ``None`` for none."""
    if "usage" in step and step["usage"] is None:
        return None
    u = dict(step.get("usage") or {})
    usage = {
        "input_tokens": u.get("input_tokens", u.get("prompt_tokens", 10)),
        "output_tokens": u.get("output_tokens", u.get("completion_tokens", 5)),
    }
    read = u.get("cache_read_input_tokens", u.get("cached_tokens"))
    if read is not None:
        usage["cache_read_input_tokens"] = read
    if "cache_creation_input_tokens" in u:
        usage["cache_creation_input_tokens"] = u["cache_creation_input_tokens"]
    return usage


def _tool_input(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}  # a non-streamed answer cannot carry malformed input


def _event(data: dict[str, Any]) -> str:
    return f"event: {data['type']}\ndata: " + json.dumps(data, ensure_ascii=False) + "\n\n"


def _content_blocks(step: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's content blocks, complete, in order: thinking, redacted, text, tool uses."""
    blocks: list[dict[str, Any]] = []
    if step.get("thinking"):
        blocks.append(
            _without_none(
                {"type": "thinking", "thinking": step["thinking"], "signature": _signature(step)}
            )
        )
    if step.get("redacted_thinking"):
        blocks.append({"type": "redacted_thinking", "data": step["redacted_thinking"]})
    if step.get("text"):
        blocks.append({"type": "text", "text": step["text"]})
    for i, call in enumerate(step.get("tool_calls") or ()):
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", f"toolu_{i}"),
                "name": call["name"],
                "input": call.get("arguments", {}),
            }
        )
    return blocks


def _block_events(
    index: int, block: dict[str, Any], step: dict[str, Any], size: int
) -> list[dict[str, Any]]:
    def delta(d: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": d}

    btype = block["type"]
    start = {"type": "content_block_start", "index": index}
    deltas: list[dict[str, Any]] = []
    if btype == "thinking":
        signed = block.get("signature") is not None
        start["content_block"] = {"type": "thinking", "thinking": ""}
        if signed:
            start["content_block"]["signature"] = ""
        deltas = [
            delta({"type": "thinking_delta", "thinking": p})
            for p in _pieces(block["thinking"], size)
        ]
        if signed:
            deltas.append(delta({"type": "signature_delta", "signature": block["signature"]}))
    elif btype == "text":
        pieces = _pieces(block["text"], size)
        prefill = pieces[0] if step.get("prefill_text") else ""
        start["content_block"] = {"type": "text", "text": prefill}
        deltas = [delta({"type": "text_delta", "text": p}) for p in pieces]
    elif btype == "tool_use":
        start["content_block"] = {**block, "input": {}}
        args = _args_text(block["input"])
        third = max(1, -(-len(args) // 3))
        deltas = [
            delta({"type": "input_json_delta", "partial_json": f}) for f in _pieces(args, third)
        ]
    else:
        start["content_block"] = block
    return [start, *deltas, {"type": "content_block_stop", "index": index}]


def _anthropic_events(step: dict[str, Any], model: str, size: int) -> list[str | bytes]:
    if "sse" in step:
        return [c if isinstance(c, str | bytes) else _event(c) for c in step["sse"]]
    usage = _anthropic_usage(step)
    message: dict[str, Any] = {
        "id": "msg_scripted",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage is not None:
        # The real API starts output_tokens at a small number and raises it in message_delta.
        message["usage"] = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    out = [_event({"type": "message_start", "message": message})]
    for index, block in enumerate(_content_blocks(step)):
        if step.get("ping"):
            out.append(_event({"type": "ping"}))
        out.extend(_event(e) for e in _block_events(index, block, step, size))
    if step.get("error_in_stream") is not None:
        out.append(_event({"type": "error", "error": step["error_in_stream"]}))
        return out
    if step.get("base_resp") is not None:
        out.append("data: " + json.dumps({"base_resp": step["base_resp"]}) + "\n\n")
        return out
    final: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(step), "stop_sequence": None},
    }
    if usage is not None:
        final["usage"] = usage
    out.append(_event(final))
    out.append(_event({"type": "message_stop"}))
    return out


def _anthropic_message(step: dict[str, Any], model: str) -> dict[str, Any]:
    if step.get("error_in_stream") is not None:
        return {"type": "error", "error": step["error_in_stream"]}
    if step.get("base_resp") is not None:
        return {"id": "msg_scripted", "base_resp": step["base_resp"]}
    blocks = _content_blocks(step)
    for block in blocks:
        if block["type"] == "tool_use":
            block["input"] = _tool_input(block["input"])
    out: dict[str, Any] = {
        "id": "msg_scripted",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": _stop_reason(step),
        "stop_sequence": None,
    }
    usage = _anthropic_usage(step)
    if usage is not None:
        out["usage"] = usage
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a scripted model (OpenAI and Anthropic routes)."
    )
    parser.add_argument("script", help="JSON file holding a list of steps ('-' for stdin)")
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.script == "-":
        script = json.load(sys.stdin)
    else:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)
    server = ScriptedServer(script, chunk_size=args.chunk_size).start()
    print(server.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
