"""``mcode serve``: an OpenAI-compatible HTTP server over one :class:`~.engine.Engine`.

    client ──HTTP──> /v1/chat/completions ──parse (openai_chat)──> render + grammar (chat)
                                         ──FIFO admission──> engine.stream ──> JSON or SSE

- ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream`` true or false), ``GET /health``,
  ``GET /metrics`` (Prometheus text). With ``--api-key`` every ``/v1`` route wants
  ``Authorization: Bearer KEY`` (401 otherwise); ``/health`` and ``/metrics`` stay open.
- ``stop`` strings are cut from the answer (streaming too: the chat layer holds back what may
  begin one); ``logprobs`` / ``top_logprobs`` come in OpenAI's shape, streamed entries on the
  chunk that carries their tokens' text.
- Every request is checked before it queues: malformed JSON, an unknown model, bad parameters,
  tool schemas the grammar cannot express and a prompt longer than the window are 4xx in OpenAI's
  error shape, and cost the engine nothing.
- The engine runs one sequence at a time; requests wait in a FIFO queue (``asyncio.Lock``
  hands the lock to waiters in arrival order), so none starves.
- A client that disconnects mid-stream cancels its response task; closing the chat iterator
  sets the engine worker's stop flag, so the generation ends within a token and the next request
  in the queue starts. ``/metrics`` counts it under ``mcode_generations_cancelled_total``.

FastAPI and uvicorn are imported by this module only, and this module only by ``mcode serve``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from mcode.errors import ConfigError, ProviderError

from .chat import (
    CallArguments,
    CallStarted,
    ChatItem,
    ChatResult,
    TextPiece,
    generate,
    grammar_for,
    render,
    sampling_for,
)
from .chat_template import Segment
from .engine import Engine, Sampling
from .logprobs import TokenLogprob
from .openai_chat import (
    ChatRequest,
    RequestError,
    call_id,
    chunk,
    completion_id,
    logprobs,
    parse_body,
    usage,
)


@dataclass(slots=True)
class Metrics:
    """Counters since start (``/metrics``); ``running`` and ``waiting`` are gauges."""

    requests_total: int = 0
    requests_rejected_total: int = 0
    generations_completed_total: int = 0
    generations_cancelled_total: int = 0
    generations_failed_total: int = 0
    prompt_tokens_total: int = 0
    completion_tokens_total: int = 0
    prefix_cache_hits_total: int = 0
    prefix_cache_hit_tokens_total: int = 0
    running: int = 0
    waiting: int = 0

    def prometheus(self) -> str:
        lines = []
        for f in fields(self):
            kind = "counter" if f.name.endswith("_total") else "gauge"
            lines.append(f"# TYPE mcode_{f.name} {kind}")
            lines.append(f"mcode_{f.name} {getattr(self, f.name)}")
        return "\n".join(lines) + "\n"

    def record(self, result: ChatResult) -> None:
        g = result.generated
        self.generations_completed_total += 1
        self.prompt_tokens_total += g.prompt_tokens
        self.completion_tokens_total += g.completion_tokens
        if g.cached_tokens:
            self.prefix_cache_hits_total += 1
            self.prefix_cache_hit_tokens_total += g.cached_tokens


@dataclass(frozen=True, slots=True)
class _Job:
    """A checked request, ready for the engine."""

    request: ChatRequest
    prompt: list[Segment]
    sampling: Sampling


def create_app(engine: Engine, *, api_key: str | None = None) -> FastAPI:
    """The app over a loaded ``engine``."""
    app = FastAPI(title="mcode serve", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()
    queue = asyncio.Lock()

    def error(e: RequestError) -> JSONResponse:
        metrics.requests_rejected_total += 1
        return JSONResponse(e.body(), status_code=e.status)

    def authorized(request: Request) -> bool:
        if api_key is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode())

    def unauthorized() -> JSONResponse:
        return error(
            RequestError(
                "missing or wrong API key: send 'Authorization: Bearer KEY' with the key "
                "mcode serve was started with (--api-key)",
                status=401,
                type="authentication_error",
                code="invalid_api_key",
            )
        )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": engine.model_id,
            "running": metrics.running,
            "waiting": metrics.waiting,
        }

    @app.get("/metrics")
    async def get_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.prometheus())

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        return {
            "object": "list",
            "data": [
                {
                    "id": engine.model_id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "mcode",
                    "max_model_len": engine.n_ctx,
                }
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        metrics.requests_total += 1
        if not authorized(request):
            return unauthorized()
        try:
            job = _check(engine, await request.body())
        except RequestError as e:
            return error(e)
        if job.request.stream:
            return StreamingResponse(
                _sse(engine, job, queue, metrics), media_type="text/event-stream"
            )
        return await _complete(engine, job, queue, metrics)

    return app


def _check(engine: Engine, raw: bytes) -> _Job:
    """Everything that can be refused is refused here, before the request queues."""
    req = parse_body(raw)
    if req.model != engine.model_id:
        raise RequestError(
            f"the model {req.model!r} does not exist here; this server runs {engine.model_id!r}",
            status=404,
            param="model",
            code="model_not_found",
        )
    try:
        prompt = render(engine, req.system, req.messages, req.tools)
        grammar = grammar_for(req.tools, req.tool_choice)
    except ProviderError as e:  # an image, a template that cannot render the conversation
        raise RequestError(str(e), param="messages") from None
    except ValueError as e:  # a schema the grammar cannot express
        raise RequestError(str(e), param="tools", code="invalid_tool_schema") from None
    if grammar is not None and not grammar.tool_names and not engine.supports_grammar:
        grammar = None  # tool_choice "none": an answer needs no constraint
    if req.logprobs and not getattr(engine, "supports_logprobs", False):
        raise RequestError(
            f"the engine serving {engine.model_id} cannot report log-probabilities; "
            "send the request without 'logprobs'",
            param="logprobs",
            code="logprobs_unsupported",
        )
    if grammar is not None and not engine.supports_grammar:
        raise RequestError(
            f"the engine serving {engine.model_id} cannot constrain output to tool calls; "
            "send the request without tools",
            param="tools",
            code="tools_unsupported",
        )
    prompt_tokens = len(engine.tokenize(prompt))
    room = engine.n_ctx - prompt_tokens
    if room < 1 or (req.max_tokens is not None and req.max_tokens > room):
        asked = f" plus max_tokens {req.max_tokens}" if req.max_tokens else ""
        raise RequestError(
            f"the prompt is {prompt_tokens} tokens{asked}; the model's context window is "
            f"{engine.n_ctx} tokens. Shorten the messages or ask for fewer tokens",
            param="messages",
            code="context_length_exceeded",
        )
    sampling = sampling_for(
        grammar,
        max_tokens=req.max_tokens or room,
        temperature=req.temperature,
        seed=req.seed,
        top_p=req.top_p,
        stop=req.stop,
        logprobs=req.top_logprobs if req.logprobs else None,
    )
    return _Job(req, prompt, sampling)


# Generations in flight, kept referenced until they end (the event loop holds tasks weakly).
_generations: set[asyncio.Task[None]] = set()


async def _run(
    engine: Engine, job: _Job, queue: asyncio.Lock, metrics: Metrics
) -> AsyncGenerator[ChatItem, None]:
    """The items of one generation, which runs in its own task.

    The request's task is the wrong owner for the engine: when its client disconnects,
    Starlette cancels it again and again until it exits, so it cannot wait for the engine to
    stop. The generation task is cancelled once, waits for the engine worker to finish its
    token, and only then lets the next request in.
    """
    items: asyncio.Queue[ChatItem | BaseException | None] = asyncio.Queue()
    task = asyncio.create_task(_generation(engine, job, queue, metrics, items))
    _generations.add(task)
    task.add_done_callback(_generations.discard)
    try:
        while (item := await items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()  # a no-op once it has finished


async def _generation(
    engine: Engine,
    job: _Job,
    queue: asyncio.Lock,
    metrics: Metrics,
    out: asyncio.Queue[ChatItem | BaseException | None],
) -> None:
    """Wait for the engine (FIFO), generate into ``out``; counts what the metrics show."""
    metrics.waiting += 1
    try:
        await queue.acquire()
    finally:
        metrics.waiting -= 1
    metrics.running += 1
    try:
        async with aclosing(generate(engine, job.prompt, job.sampling)) as chat:
            async for item in chat:
                if isinstance(item, ChatResult):
                    metrics.record(item)
                out.put_nowait(item)
        out.put_nowait(None)
    except asyncio.CancelledError:
        metrics.generations_cancelled_total += 1
        raise
    except Exception as e:  # reaches the client as an error; the server goes on
        metrics.generations_failed_total += 1
        out.put_nowait(e)
    finally:
        metrics.running -= 1
        queue.release()


async def _complete(engine: Engine, job: _Job, queue: asyncio.Lock, metrics: Metrics) -> Any:
    text: list[str] = []
    lps: list[TokenLogprob] = []
    result: ChatResult | None = None
    try:
        async with aclosing(_run(engine, job, queue, metrics)) as items:
            async for item in items:
                if isinstance(item, TextPiece):
                    text.append(item.text)
                elif isinstance(item, TokenLogprob):
                    lps.append(item)
                elif isinstance(item, ChatResult):
                    result = item
    except ProviderError as e:
        return JSONResponse(_engine_error(e), status_code=500)
    assert result is not None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    finish = result.generated.finish_reason
    if result.call is not None:
        name, arguments = result.call
        message["tool_calls"] = [
            {
                "id": call_id(),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ]
        finish = "tool_calls"
    elif result.cut_call:
        finish = "length"
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": engine.model_id,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish,
                "logprobs": logprobs(lps if job.request.logprobs and not result.call else None),
            }
        ],
        "usage": usage(result.generated),
    }


async def _sse(
    engine: Engine, job: _Job, queue: asyncio.Lock, metrics: Metrics
) -> AsyncIterator[str]:
    id_, model = completion_id(), engine.model_id

    def data(obj: dict[str, Any]) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    yield data(chunk(id_, model, {"role": "assistant", "content": ""}))
    # Log-probabilities wait for the chunk that carries their tokens' text.
    lps: list[TokenLogprob] | None = [] if job.request.logprobs else None
    try:
        async with aclosing(_run(engine, job, queue, metrics)) as items:
            async for item in items:
                if isinstance(item, TokenLogprob):
                    if lps is not None:
                        lps.append(item)
                elif isinstance(item, TextPiece):
                    yield data(chunk(id_, model, {"content": item.text}, token_logprobs=lps))
                    lps = [] if lps is not None else None
                elif isinstance(item, CallStarted):
                    start = {
                        "index": 0,
                        "id": call_id(),
                        "type": "function",
                        "function": {"name": item.name, "arguments": ""},
                    }
                    yield data(chunk(id_, model, {"tool_calls": [start]}))
                elif isinstance(item, CallArguments):
                    more = {"index": 0, "function": {"arguments": item.text}}
                    yield data(chunk(id_, model, {"tool_calls": [more]}))
                else:
                    if lps:  # tokens whose text was a stop string: no text, still generated
                        yield data(chunk(id_, model, {"content": ""}, token_logprobs=lps))
                    finish = item.generated.finish_reason
                    if item.call is not None:
                        finish = "tool_calls"
                    elif item.cut_call:
                        finish = "length"
                    yield data(chunk(id_, model, {}, finish))
                    if job.request.include_usage:
                        yield data({**chunk(id_, model, None), "usage": usage(item.generated)})
    except ProviderError as e:
        yield data(_engine_error(e))
    yield "data: [DONE]\n\n"


def _engine_error(e: ProviderError) -> dict[str, Any]:
    return RequestError(
        f"{e.message} ({e.hint})" if e.hint else e.message, status=500, type="server_error"
    ).body()


# -- the command ----------------------------------------------------------------------------


def build_engine(
    kind: str, model: str, *, n_ctx: int, threads: int | None, attention: str = "dense"
) -> Engine:
    """The engine ``--engine`` names over ``--model`` (a path, or ``default`` for the embedded
    SmolLM2). Raises ConfigError saying what is missing."""
    from mcode.providers.presets import PRESETS

    from .embedded import embedded_model_path
    from .engines import build_engine as make

    if model == "default":
        path, model_id = embedded_model_path(), PRESETS["local"].default_model
    else:
        path = Path(model).expanduser()
        model_id = path.name.removesuffix(".gguf")
    return make(kind, path, model_id=model_id, n_ctx=n_ctx, threads=threads, attention=attention)


def serve(
    *,
    host: str,
    port: int,
    engine_kind: str,
    model: str,
    api_key: str | None,
    n_ctx: int,
    threads: int | None,
    attention: str = "dense",
) -> int:
    """Load the model, bind, say where on stdout, serve until interrupted."""
    import uvicorn

    engine = build_engine(engine_kind, model, n_ctx=n_ctx, threads=threads, attention=attention)
    try:
        sock = socket.create_server((host, port), backlog=128)
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror}",
            hint="pick another --port (0 chooses a free one)",
        ) from None
    bound = sock.getsockname()[1]
    engine.load()
    # The line a script (or a test) waits for: the socket already listens, so a request sent
    # now queues in the backlog until uvicorn accepts it.
    print(f"mcode serve: http://{host}:{bound}/v1 model={engine.model_id}", flush=True)
    app = create_app(engine, api_key=api_key)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        engine.close()
    print("mcode serve: stopped", file=sys.stderr)
    return 0
