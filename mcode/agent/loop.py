"""One user turn: build the request, stream the model, run its tool calls, repeat.

``run_turn`` -> ``_step`` (one model call) -> ``_run_calls`` (its tool calls). Limits and early
exits are exceptions carrying a message (LimitReached, ProviderError, CancelledError); run_turn
turns each into the ``turn.finished`` event and a :class:`TurnOutcome`.

Invariants the rest of mcode relies on:
- history is append-only, and every append is mirrored by an event whose ``data["message"]`` is
  that message (so the store can rebuild it for --resume);
- every tool call in history gets exactly one tool result, also when the turn is cancelled;
- consecutive read-only calls (read, grep, glob, ls) run concurrently; results are appended in the
  order the model made the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any, cast

from mcode import events as ev
from mcode.agent.compaction import compact, request_for
from mcode.agent.conversation import Conversation, TurnOutcome
from mcode.agent.host import Host
from mcode.agent.loop_guard import NOT_RUN_RESULT, LoopStopped
from mcode.agent.model_call import call_model
from mcode.agent.run_limits import BudgetReached
from mcode.errors import (
    HookBlocked,
    LimitReached,
    MCodeError,
    ProviderError,
    SandboxError,
    ToolError,
)
from mcode.messages import Message, TextPart, ToolCall, user_message
from mcode.providers.base import Completion
from mcode.tools import READ_ONLY_SAFE
from mcode.tools.base import Tool, ToolResult, parse_arguments, validate_arguments

CANCELLED_RESULT = "The user cancelled this tool call before it finished."
BUDGET_RESULT = (
    "This tool call was stopped or not run: the run reached a limit the user set "
    "(--max-time, --max-tokens or --max-cost)."
)
# A call that an error ended, or that a resumed session's process died in (kill -9, a crash).
INTERRUPTED_RESULT = (
    "This tool call did not finish: mcode stopped before it returned, so it may have partly run."
)


async def run_turn(conv: Conversation, host: Host, message: Message | None) -> TurnOutcome:
    """Run a turn to its end. ``message`` None continues the conversation without a new user
    message: an interrupted turn resumed (its open calls are answered first), so the model
    picks the work up from the history as it stands."""
    before = len(conv.totals.denials)
    outcome = await _turn(conv, host, message)
    outcome.denials = conv.totals.denials[before:]
    return outcome


async def _turn(conv: Conversation, host: Host, message: Message | None) -> TurnOutcome:
    host.emit(ev.TurnStarted(resumed=message is None))
    conv.loop_guard.reset()
    _close_open_calls(conv, host, INTERRUPTED_RESULT, "did not finish")
    text = ""
    stop_hooks = 0  # times a Stop hook kept this turn going
    try:
        if conv.prepare is not None:  # inside the try: a cancel meanwhile ends the turn as one
            await conv.prepare()
            conv.prepare = None
        if message is not None and conv.hooks is not None:
            message = await _prompt_hooks(conv, message)
        if message is not None:
            _append(conv, host, message, ev.MessageUser(message=message))
        if host.cancel_requested:  # cancelled before this task first ran (Session.cancel)
            raise asyncio.CancelledError
        # No cap unless the user set one: a runaway is the loop breaker's and the budgets' job.
        for _ in itertools.count() if conv.max_turns is None else range(conv.max_turns):
            _deliver_steers(conv, host)
            _check_run_limits(conv)
            async with _within_time(conv):
                completion = await _step(conv, host)
            text = completion.message.text
            if completion.message.tool_calls:
                _check_run_limits(conv)  # the calls are answered "not run" when it raises
                cut_off = completion.finish_reason == "length"
                async with _within_time(conv):
                    await _run_calls(conv, host, completion.message.tool_calls, cut_off=cut_off)
                continue
            if completion.finish_reason == "length":
                # Cut at the output cap: not a finished task. What the model wrote stays (in
                # history and as the result), and the turn says it was cut.
                return _cut_off(conv, host, completion)
            await _requested_compaction(conv, host)  # asked for during the last step
            if conv.has_pending_steers:
                continue
            if conv.hooks is not None and await _stop_hooks(conv, host, text, stop_hooks):
                stop_hooks += 1
                continue
            host.emit(ev.TurnFinished(reason="completed"))
            return TurnOutcome("completed", text)
        raise LimitReached(
            f"stopped after {conv.max_turns} model call{'s' * (conv.max_turns != 1)} (max turns)",
            hint="raise --max-turns (or leave it unset), or continue with --continue",
        )
    except asyncio.CancelledError:
        _close_open_calls(conv, host, CANCELLED_RESULT, "cancelled")
        _drop_steers(conv, host, "cancelled")
        host.emit(ev.TurnFinished(reason="cancelled"))
        return TurnOutcome("cancelled", text)
    except BudgetReached as e:  # a run limit: --max-time, --max-tokens, --max-cost
        _close_open_calls(conv, host, BUDGET_RESULT, "stopped at a run limit")
        host.emit(ev.Error(kind="budget", message=e.message, hint=e.hint, recoverable=False))
        _drop_steers(conv, host, "budget")
        host.emit(ev.TurnFinished(reason="budget"))
        return TurnOutcome("budget", text, e)
    except LimitReached as e:
        host.emit(ev.Error(kind="limit", message=e.message, hint=e.hint, recoverable=True))
        _drop_steers(conv, host, "max_turns")
        host.emit(ev.TurnFinished(reason="max_turns"))
        return TurnOutcome("max_turns", text, e)
    except LoopStopped as e:  # the model kept sending one failing call (agent/loop_guard.py)
        _close_open_calls(conv, host, NOT_RUN_RESULT, "not run")
        host.emit(ev.Error(kind="loop", message=e.message, hint=e.hint, recoverable=False))
        _drop_steers(conv, host, "loop")
        host.emit(ev.TurnFinished(reason="loop"))
        return TurnOutcome("loop", text, e)
    except MCodeError as e:
        # A provider's error by its kind, any other by its class (both listed in ErrorKind).
        kind = cast(ev.ErrorKind, e.kind if isinstance(e, ProviderError) else type(e).__name__)
        if isinstance(e, SandboxError):
            kind = "sandbox"
        host.emit(ev.Error(kind=kind, message=e.message, hint=e.hint, recoverable=False))
        _close_open_calls(conv, host, INTERRUPTED_RESULT, "did not finish")
        _drop_steers(conv, host, "error")
        host.emit(ev.TurnFinished(reason="error"))
        return TurnOutcome("error", text, e)


def _check_run_limits(conv: Conversation) -> None:
    if conv.run_limits is not None:
        conv.run_limits.check(conv.totals.usage)


@contextlib.asynccontextmanager
async def _within_time(conv: Conversation) -> AsyncIterator[None]:
    """Cancel what runs inside at the run's wall-time limit, and raise BudgetReached then.
    Tools wind up as on a user's cancel: an edit finishes its write, a command is killed."""
    left = conv.run_limits.time_left() if conv.run_limits is not None else None
    if left is None:
        yield
        return
    deadline = asyncio.timeout(left)
    try:
        async with deadline:
            yield
    except TimeoutError:
        if deadline.expired() and conv.run_limits is not None:
            raise conv.run_limits.out_of_time() from None
        raise


def _cut_off(conv: Conversation, host: Host, completion: Completion) -> TurnOutcome:
    text = completion.message.text
    cap = f" ({completion.usage.output_tokens} tokens)" if completion.usage.output_tokens else ""
    kept = "what it wrote is kept as the result" if text else "it had written no answer yet"
    e = LimitReached(
        f"the answer was cut at the model's output cap{cap}; {kept}",
        hint="ask for a shorter answer or one step at a time, or raise max_output_tokens "
        "([local] for the embedded model, [providers.NAME] for an API)",
    )
    host.emit(ev.Error(kind="output_limit", message=e.message, hint=e.hint, recoverable=False))
    _drop_steers(conv, host, "output_limit")
    host.emit(ev.TurnFinished(reason="output_limit"))
    return TurnOutcome("output_limit", text, e)


async def _prompt_hooks(conv: Conversation, message: Message) -> Message:
    """The user message as the UserPromptSubmit hooks let it through (with their context
    added); a blocked one raises HookBlocked before it reaches the history."""
    assert conv.hooks is not None
    gate = await conv.hooks.before_prompt(message.text, agent=conv.agent_id)
    if gate.block:
        raise HookBlocked(
            f"a UserPromptSubmit hook blocked the message: {gate.reason or 'no reason given'}",
            hint="change the message, or the hook (see the hook.finished event)",
        )
    parts = message.parts
    if gate.text is not None:
        parts = (TextPart(gate.text), *(p for p in parts if not isinstance(p, TextPart)))
    if gate.context:
        parts = (*parts, TextPart(gate.context))
    return message if parts == message.parts else dataclasses.replace(message, parts=parts)


# Times one turn may be kept going by Stop hooks before it ends anyway (a hook that always
# blocks would otherwise loop forever; Claude Code leaves that to stop_hook_active alone).
MAX_STOP_HOOK_ROUNDS = 3


async def _stop_hooks(conv: Conversation, host: Host, text: str, rounds: int) -> bool:
    """Whether a Stop (SubagentStop) hook keeps the turn going: its reason becomes the next
    user message, delivered like a steer."""
    assert conv.hooks is not None
    reason = await conv.hooks.on_stop(text, agent=conv.agent_id, again=rounds > 0)
    if not reason:
        return False
    if rounds >= MAX_STOP_HOOK_ROUNDS:
        host.emit(
            ev.Error(
                kind="plugin",
                message=f"a stop hook asked to keep going a {rounds + 1}th time; the turn "
                f"ends (at most {MAX_STOP_HOOK_ROUNDS} rounds): {reason}",
                hint="make the hook look at stop_hook_active in its input",
                recoverable=True,
            )
        )
        return False
    conv.add_steer(reason)
    return True


def _append(conv: Conversation, host: Host, message: Message, payload: ev.Payload) -> None:
    """Append ``message`` to history and emit ``payload``, the event that records it."""
    conv.history.append(message)
    host.emit(payload)


def _deliver_steers(conv: Conversation, host: Host) -> None:
    for text in conv.take_steers():
        message = user_message(text)
        _append(conv, host, message, ev.SteerDelivered(message=message, text=text))
        conv.loop_guard.reset()  # the user said something new: retrying may be right now


def _drop_steers(conv: Conversation, host: Host, reason: str) -> None:
    """Steers a turn that ended early never delivered. They were meant for the work that
    stopped, so they are reported, not carried into the next turn (where an in-process front
    end's next message would have them acted on, and a resumed session would not)."""
    for text in conv.take_steers():
        host.emit(
            ev.Error(
                kind="steer",
                message=f"the steer {text!r} was not delivered: the turn ended ({reason}) "
                "before its next step",
                hint="send it again as a user message to act on it",
                recoverable=True,
            )
        )


async def _step(conv: Conversation, host: Host) -> Completion:
    """One model call, compacting first if the request would not fit the window, and once
    more (then resending once) if the API says it overflowed before answering."""
    await _requested_compaction(conv, host)
    request = request_for(conv)
    compacted = False
    if not conv.budget.fits(conv.budget.estimate(request)):
        compacted = await compact(conv, host, "auto")
        request = request_for(conv)
    held = len(request.messages)
    streamed: list[bool] = []
    try:
        completion = await call_model(conv, host, request, streamed=streamed)
    except ProviderError as e:
        if e.kind != "context_overflow" or streamed or compacted:
            raise
        if not await compact(conv, host, "overflow"):
            raise
        request = request_for(conv)
        held = len(request.messages)
        # A second overflow ends the turn: one compaction, one resend.
        completion = await call_model(conv, host, request, streamed=streamed)
    conv.totals.model_calls += 1
    conv.totals.usage.add(completion.usage)
    conv.budget.observe(completion.usage, request, held)
    said = completion.message
    # Normalised by the provider to one of ev.FinishReason (mcode/providers/base.py).
    finish = cast(ev.FinishReason, completion.finish_reason)
    _append(conv, host, said, ev.MessageAssistant(message=said, finish_reason=finish))
    host.emit(
        ev.Usage.of(
            completion.usage,
            total=conv.totals.usage,
            context_tokens=conv.budget.anchor_tokens or None,
            context_window=conv.budget.window,
        )
    )
    return completion


async def _requested_compaction(conv: Conversation, host: Host) -> None:
    """Compact now if a front end asked for it (Session.compact) while the turn ran."""
    requests = conv.take_compact_requests()
    if not requests:
        return
    instructions = "\n".join(i for i, _ in requests if i) or None
    try:
        done = await compact(conv, host, "manual", instructions)
    except BaseException:
        for _, future in requests:
            if not future.done():
                future.set_result(False)
        raise
    for _, future in requests:
        if not future.done():
            future.set_result(done)


async def _run_calls(
    conv: Conversation, host: Host, calls: tuple[ToolCall, ...], *, cut_off: bool = False
) -> None:
    """Run ``calls`` and append their results. ``cut_off``: the answer hit the output token
    limit, so its last call may be truncated (and a truncated JSON object can still parse, e.g.
    a write whose content stops mid-line): that call is refused, never run."""
    i = 0
    while i < len(calls):
        j = i + 1
        if calls[i].name in READ_ONLY_SAFE:
            while j < len(calls) and calls[j].name in READ_ONLY_SAFE:
                j += 1
        group = calls[i:j]
        last = cut_off and j == len(calls)
        if len(group) == 1:
            results = [await _run_one(conv, host, group[0], cut_off=last)]
        else:
            results = list(
                await asyncio.gather(
                    *(_run_one(conv, host, c, cut_off=last and c is group[-1]) for c in group)
                )
            )
        stop: MCodeError | None = None  # a LoopStopped, or a result's fatal error
        for call, (result, duration) in zip(group, results, strict=True):
            acted = any(t.name == call.name and t.permission != "read" for t in conv.tools)
            seen = conv.loop_guard.observe(call, result, acted=acted)
            _finish(conv, host, call, seen.result, duration)
            if seen.warning is not None:
                host.emit(seen.warning)
            stop = stop or seen.stop or result.fatal
        if stop is not None:
            raise stop  # the calls not yet run are answered by run_turn
        i = j


def _finish(
    conv: Conversation, host: Host, call: ToolCall, result: ToolResult, duration: float
) -> None:
    conv.totals.tool_calls += 1
    conv.tool_started.pop(call.id, None)
    message = Message(
        role="tool",
        parts=(TextPart(result.content), *result.images),
        tool_call_id=call.id,
        name=call.name,
        is_error=result.is_error,
    )
    _append(
        conv,
        host,
        message,
        ev.ToolFinished(
            message=message,
            id=call.id,
            name=call.name,
            ok=not result.is_error,
            summary=result.summary,
            duration=round(duration, 3),
        ),
    )
    for path in result.changed_files:
        # checkpoint: the id of the file's before-image (`mcode undo`), None when none is kept.
        checkpoint = result.checkpoints.get(path)
        host.emit(ev.FileChanged(path=path, tool_call_id=call.id, checkpoint=checkpoint))


async def _run_one(
    conv: Conversation, host: Host, call: ToolCall, *, cut_off: bool = False
) -> tuple[ToolResult, float]:
    started = conv.tool_started[call.id] = time.monotonic()
    host.emit(ev.ToolRequested(id=call.id, name=call.name, arguments=call.arguments))
    tool = next((t for t in conv.tools if t.name == call.name), None)
    try:
        if cut_off:
            raise ToolError(
                "your answer was cut off at the output token limit inside this call, so it "
                "was not run (its arguments may be incomplete)",
                hint="send it again with shorter arguments, e.g. write a big file in parts",
            )
        if tool is None:
            names = ", ".join(t.name for t in conv.tools)
            raise ToolError(f"there is no tool named {call.name!r}; the tools are: {names}")
        args = parse_arguments(call.arguments)
        validate_arguments(tool, args)
        gate = None
        if conv.hooks is not None:
            gate = await conv.hooks.before_tool(call.name, args, call.id, agent=conv.agent_id)
            if gate.arguments is not None:
                args = gate.arguments
                validate_arguments(tool, args)
            if gate.decision == "deny":
                why = f"a PreToolUse hook blocked it: {gate.reason or 'no reason given'}"
                blocked = _record_denial(conv, host, call, tool.subject(args), why, by="hook")
                return _denied_result(blocked), time.monotonic() - started
        if gate is not None and gate.decision == "allow":
            _decided(conv, host, call, tool.subject(args), True, "hook", gate.reason or "allowed")
        else:
            denied = await _denial(conv, host, call, tool, args)
            if denied is not None:
                return _denied_result(denied), time.monotonic() - started
        host.emit(ev.ToolStarted(id=call.id, name=call.name))

        def emit_output(chunk: str) -> None:
            host.emit(ev.ToolOutput(id=call.id, text=chunk))

        ctx = dataclasses.replace(
            conv.tool_context,
            emit_output=emit_output,
            checkpoint=host.checkpoint,
            spawn_agent=host.spawn_agent,
            call_id=call.id,
            emit_event=host.emit,
        )
        if tool.permission == "edit":
            result = await _run_to_the_end(conv, host, call, tool.run(args, ctx), started)
        else:
            result = await tool.run(args, ctx)
        if conv.hooks is not None:
            feedback = await conv.hooks.after_tool(call.name, args, result, call.id)
            if feedback:
                result.content += f"\n\n{feedback}"
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as e:
        result = _error_result(call, e)
    return result, time.monotonic() - started


def _error_result(call: ToolCall, e: Exception) -> ToolResult:
    if isinstance(e, SandboxError):  # the model hears why, then the turn ends
        return ToolResult(content=f"Error: {e}", summary=e.message, is_error=True, fatal=e)
    if isinstance(e, ToolError):
        return ToolResult(content=f"Error: {e}", summary=e.message, is_error=True)
    # A bug in a tool must not end the run; the model hears about it.
    return ToolResult(
        content=f"Error: the {call.name} tool failed unexpectedly: {type(e).__name__}: {e}",
        summary="internal tool error",
        is_error=True,
    )


async def _run_to_the_end(
    conv: Conversation,
    host: Host,
    call: ToolCall,
    run: Coroutine[Any, Any, ToolResult],
    started: float,
) -> ToolResult:
    """Run a file-changing tool to its end even when the turn is cancelled meanwhile, and then
    record its real result before the cancel goes on. These tools work in a thread, which a
    cancel cannot stop: the file would change after the call was recorded as cancelled, with
    no ``file.changed``, and the model would believe it unchanged. They take milliseconds."""
    task = asyncio.ensure_future(run)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as cancel:
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                pass  # cancelled again: the file still changes; wait for it
        error = None if task.cancelled() else task.exception()
        if not task.cancelled() and (error is None or isinstance(error, Exception)):
            result = task.result() if error is None else _error_result(call, error)
            _finish(conv, host, call, result, time.monotonic() - started)
        raise cancel


async def _denial(
    conv: Conversation, host: Host, call: ToolCall, tool: Tool, args: dict[str, Any]
) -> str | None:
    """None if the call may run, else the reason it may not (already recorded as an event)."""
    decision = conv.permissions.check(tool, args)
    subject = tool.subject(args)
    if decision.action == "allow":
        return None
    if decision.action == "ask":
        if not host.interactive:
            reason = (
                f"{decision.reason}; this run is headless, so nobody can approve it. "
                "Allow it with --permission-mode or an allow rule in the config"
            )
            return _record_denial(conv, host, call, subject, reason, by="headless")
        request_id = uuid.uuid4().hex[:12]
        answer = host.expect_approval(request_id)
        host.emit(
            ev.PermissionAsked(
                request_id=request_id,
                id=call.id,
                name=call.name,
                subject=subject,
                permission=tool.permission,
                reason=decision.reason,
            )
        )
        try:
            reply = await answer
        except asyncio.CancelledError:
            # The question is void: say so, so that a front end closes its dialog. Not a
            # denial (no exit code 4); the call is answered as cancelled when the turn ends.
            why = "the turn was cancelled before the user answered"
            _decided(conv, host, call, subject, False, "cancel", why)
            raise
        if reply.allowed:
            _decided(conv, host, call, subject, True, reply.by, reply.reason or "the user approved")
            return None
        why = {"user": "the user declined"}.get(reply.by, "nobody approved it")
        why = f"{why}: {reply.reason}" if reply.reason else why
        return _record_denial(conv, host, call, subject, why, by=reply.by)
    return _record_denial(
        conv, host, call, subject, decision.reason, by="rule" if decision.rule else "mode"
    )


def _record_denial(
    conv: Conversation, host: Host, call: ToolCall, subject: str, reason: str, by: ev.DecidedBy
) -> str:
    conv.totals.denials.append({"id": call.id, "name": call.name, "subject": subject})
    _decided(conv, host, call, subject, False, by, reason)
    return reason


def _decided(
    conv: Conversation,
    host: Host,
    call: ToolCall,
    subject: str,
    allowed: bool,
    by: ev.DecidedBy,
    reason: str,
) -> None:
    host.emit(
        ev.PermissionDecided(
            id=call.id, name=call.name, subject=subject, allowed=allowed, by=by, reason=reason
        )
    )


def _denied_result(reason: str) -> ToolResult:
    return ToolResult(
        content=f"Error: permission denied: {reason}. Do not retry this call; "
        "continue without it or tell the user what you needed.",
        summary="permission denied",
        is_error=True,
    )


def _close_open_calls(conv: Conversation, host: Host, content: str, summary: str) -> None:
    """Give every tool call of the last assistant message a result (``content`` says why it has
    none): a turn that ends early, or a resumed one whose process died mid-call."""
    last = next((m for m in reversed(conv.history) if m.role == "assistant"), None)
    if last is None:
        return
    answered = {m.tool_call_id for m in conv.history if m.role == "tool"}
    now = time.monotonic()
    for call in last.tool_calls:
        if call.id not in answered:
            # A call cut short (cancelled mid-command) ran until now; one never started, 0 s.
            ran = now - conv.tool_started.get(call.id, now)
            _finish(
                conv,
                host,
                call,
                ToolResult(content=content, summary=summary, is_error=True),
                ran,
            )
