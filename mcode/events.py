"""The event stream: everything a session does, as typed, JSON-serialisable events.

Every front end consumes this one stream: ``mcode exec --output-format stream-json`` prints it
as JSON lines, the store persists it, the TUI and the language server render it. The envelope:

    {"v": 1, "seq": 7, "ts": 1764140000.123, "session_id": "…", "turn_id": "…" | null,
     "type": "tool.finished", "data": {…}}

An event of a conversation other than the session's main one (a ``task`` sub-agent, a team
member) also carries ``"agent": "<its id>"`` after ``turn_id``; the main one's events have no
``agent`` key, so their JSON is what it always was.

``v`` is :data:`SCHEMA_VERSION`; it changes only when a field is removed or changes meaning
(new event types and new fields, like ``agent``, are additive). ``seq`` counts from 1 within a
session and never repeats, also across ``--resume``. The payload of each type is documented in
README.md ("Event schema"); the names below are the complete list for this version.
"""

from __future__ import annotations

import json
import json.encoder
import math
from dataclasses import dataclass
from typing import Any

from mcode.messages import clean_text

SCHEMA_VERSION = 1

SESSION_STARTED = "session.started"
TURN_STARTED = "turn.started"
MESSAGE_USER = "message.user"
TEXT_DELTA = "text.delta"
THINKING_DELTA = "thinking.delta"
MESSAGE_ASSISTANT = "message.assistant"
TOOL_REQUESTED = "tool.requested"
PERMISSION_ASKED = "permission.asked"
PERMISSION_DECIDED = "permission.decided"
TOOL_STARTED = "tool.started"
TOOL_OUTPUT = "tool.output"
TOOL_FINISHED = "tool.finished"
FILE_CHANGED = "file.changed"
UNDO = "undo"
STEER_RECEIVED = "steer.received"
STEER_DELIVERED = "steer.delivered"
RETRY = "retry"
COMPACTION = "compaction"
USAGE = "usage"
ERROR = "error"
TURN_FINISHED = "turn.finished"
SESSION_FINISHED = "session.finished"

ALL_TYPES = frozenset(
    {
        SESSION_STARTED,
        TURN_STARTED,
        MESSAGE_USER,
        TEXT_DELTA,
        THINKING_DELTA,
        MESSAGE_ASSISTANT,
        TOOL_REQUESTED,
        PERMISSION_ASKED,
        PERMISSION_DECIDED,
        TOOL_STARTED,
        TOOL_OUTPUT,
        TOOL_FINISHED,
        FILE_CHANGED,
        UNDO,
        STEER_RECEIVED,
        STEER_DELIVERED,
        RETRY,
        COMPACTION,
        USAGE,
        ERROR,
        TURN_FINISHED,
        SESSION_FINISHED,
    }
)

# Events whose ``data["message"]`` is a conversation entry: replaying them in order rebuilds the
# model's history exactly (this is how --resume works). A ``compaction`` event replaces the
# history instead: its ledger message followed by the last ``data["kept"]`` messages.
HISTORY_TYPES = frozenset({MESSAGE_USER, MESSAGE_ASSISTANT, TOOL_FINISHED, STEER_DELIVERED})

# High-volume, superseded by the message that completes them; not persisted one by one.
TRANSIENT_TYPES = frozenset({TEXT_DELTA, THINKING_DELTA, TOOL_OUTPUT})


# What Event.to_json writes: json.dumps(to_dict(), ensure_ascii=False, separators=(",", ":")).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring  # what that encoder writes for a str (C when available)
_ENVELOPE = (
    '{"v":' + str(SCHEMA_VERSION) + ',"seq":%d,"ts":%s,"session_id":%s,"turn_id":%s%s,"type":%s,'
    '"data":%s}'
)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]
    seq: int
    session_id: str
    turn_id: str | None
    ts: float
    # The conversation that emitted it (Conversation.agent_id); None for the main one.
    agent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "seq": self.seq,
            "ts": self.ts,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
        }
        if self.agent is not None:
            d["agent"] = self.agent
        d["type"] = self.type
        d["data"] = self.data
        return d

    def to_json(self) -> str:
        """One line of JSON, always encodable as UTF-8 (see :func:`mcode.messages.clean_text`):
        ``json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))``, written with
        the envelope spelled out (every event goes through here, text deltas included)."""
        ts = self.ts
        return clean_text(
            _ENVELOPE
            % (
                self.seq,
                # time.time(): a finite float, whose JSON is its repr (no encoder call).
                float.__repr__(ts) if type(ts) is float and math.isfinite(ts) else _encode(ts),
                _quote(self.session_id),
                "null" if self.turn_id is None else _quote(self.turn_id),
                "" if self.agent is None else ',"agent":' + _quote(self.agent),
                _quote(self.type),
                _encode(self.data),
            )
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        d = json.loads(line)
        return cls(
            d["type"],
            d["data"],
            d["seq"],
            d["session_id"],
            d.get("turn_id"),
            d["ts"],
            d.get("agent"),
        )
