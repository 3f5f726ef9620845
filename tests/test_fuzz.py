"""Fuzzing the parsers that read what mcode does not control: the model server's byte stream
(the SSE parser), the model's tool-call arguments, its ``<think>`` markup, the user's config
files and the stream-json lines on standard input.

The bar for each: no input crashes it (only the documented error type comes out), every
rejection says what is wrong (a non-empty message), and where the input has a meaning of its own
the parser keeps it (any chunking of a stream gives the same events, a cut-off argument never
becomes a different value).

The example counts are small for CI; ``FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py``
is the long run (its result goes into RELIABILITY.md).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcode.config import _KEYS, ConfigError, Settings, load_settings
from mcode.errors import ToolError
from mcode.exec_input import BadLine, InputMessage, parse_line
from mcode.providers.openai_stream import ThinkSplitter
from mcode.providers.sse import SSEParser, SSETooLarge
from mcode.secrets import StreamRedactor, redact
from mcode.tools.base import parse_arguments

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_recorded: set[str] = set()


def record(parser: str, examples: int) -> None:
    """RELIABILITY.md's row for ``parser`` (once per run; see tests/test_faults.py)."""
    rows = os.environ.get("MCODE_RELIABILITY_ROWS")
    if rows and parser not in _recorded:
        _recorded.add(parser)
        with open(rows, "a") as f:
            row = {"table": "fuzz", "parser": parser, "examples": examples}
            f.write(json.dumps(row) + "\n")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    return [*pieces, data[last:]]


# -- the SSE parser -----------------------------------------------------------------------------

# Bytes that look like an event stream often enough to reach every branch: field names,
# colons, the three line endings, a BOM, multi-byte UTF-8, and noise.
SSE_PIECES = st.sampled_from(
    [b"data:", b"data: ", b"event: ", b"id: 7", b"retry: 30", b": comment", b"\n", b"\r", b"\r\n"]
    + [b"\n\n", b"\xef\xbb\xbf", "é".encode(), "😀".encode(), b'{"a": 1}', b"[DONE]", b"\x00"]
)
SSE_BYTES = st.lists(st.one_of(SSE_PIECES, st.binary(max_size=12)), max_size=40).map(b"".join)


def sse_events(chunks: list[bytes]) -> list[tuple[str, str, str | None]]:
    parser = SSEParser()
    out = []
    for chunk in chunks:
        out += parser.feed(chunk)
    out += parser.close()
    return [(e.event, e.data, e.id) for e in out]


@fuzz
@given(data=SSE_BYTES, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_sse_parser_never_crashes_and_any_chunking_gives_the_same_events(data, cuts):
    try:
        whole = sse_events([data])
    except SSETooLarge as e:
        assert str(e)
        return
    assert sse_events(split(data, cuts)) == whole
    record("SSE parser (providers/sse.py)", EXAMPLES)


# -- tool-call arguments ------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@fuzz
@given(text=st.one_of(st.text(max_size=200), JSON_VALUES.map(json.dumps)))
def test_any_argument_text_parses_to_an_object_or_is_refused_with_a_reason(text):
    try:
        value = parse_arguments(text)
    except ToolError as e:
        assert e.message and e.hint
        return
    assert isinstance(value, dict)
    record("tool-call arguments (tools/base.py parse_arguments)", EXAMPLES)


@fuzz
@given(args=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5))
def test_well_formed_arguments_come_back_exactly(args):
    assert parse_arguments(json.dumps(args)) == args


@fuzz
@given(
    args=st.dictionaries(st.text(max_size=10), st.text(max_size=40), min_size=1, max_size=4),
    cut=st.integers(min_value=1),
)
def test_cut_off_arguments_are_refused_or_lose_whole_keys_never_change_a_value(args, cut):
    """A call cut off by the output limit: what a repair may keep is the keys that arrived
    whole; a string value cut short would write half a file and report success."""
    text = json.dumps(args)
    text = text[: cut % len(text)]
    try:
        value = parse_arguments(text)
    except ToolError as e:
        assert e.message
        return
    assert all(k in args and args[k] == v for k, v in value.items()), (text, value)


# -- the <think> splitter -----------------------------------------------------------------------

THINK_TEXT = st.lists(
    st.sampled_from(
        ["<think>", "</think>", "<", "</", "<th", "think>", "\n", " ", "a", "é", "x y"]
    ),
    max_size=30,
).map("".join)


def think_segments(chunks: list[str], opened: bool) -> dict[str, str]:
    splitter = ThinkSplitter(opened=opened)
    joined: dict[str, str] = {}
    for chunk in chunks:
        for kind, text in splitter.feed(chunk):
            joined[kind] = joined.get(kind, "") + text
    for kind, text in splitter.flush():
        joined[kind] = joined.get(kind, "") + text
    return joined


@fuzz
@given(text=THINK_TEXT, cuts=st.lists(st.integers(min_value=0), max_size=8), opened=st.booleans())
def test_think_splitter_gives_the_same_split_however_the_stream_is_chunked(text, cuts, opened):
    whole = think_segments([text], opened)
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in itertools.pairwise(points)]
    assert think_segments(pieces, opened) == whole
    # Nothing is lost but the tags of one reasoning block (and, documented, the whitespace
    # before an opening tag).
    shown = "".join(whole.get(k, "") for k in ("text", "thinking", "tail"))
    lead = len(text) - len(text.lstrip()) if text.lstrip().startswith("<think>") else 0
    removed = len(text) - len(shown) - lead
    assert removed in (0, len("<think>"), len("</think>"), len("<think></think>"))
    record("<think> splitter (providers/openai_stream.py)", EXAMPLES)


# -- the config loader --------------------------------------------------------------------------

KEYS = st.one_of(st.sampled_from(sorted(_KEYS)), st.text("abcdefghij._-", min_size=1, max_size=12))
TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def toml_key(key: str) -> str:
    return ".".join(json.dumps(part) for part in key.split("."))


TOML_FILES = st.one_of(
    st.dictionaries(
        KEYS, st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3)), max_size=6
    ).map(lambda d: "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in d.items())),
    st.text(max_size=120),  # anything at all, TOML or not
)


@fuzz
@given(user=TOML_FILES, project=TOML_FILES)
def test_any_config_file_loads_or_is_refused_with_the_file_named(user, project):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config" / "mcode").mkdir(parents=True)
        (root / "config" / "mcode" / "config.toml").write_text(user)
        (root / "ws" / ".mcode").mkdir(parents=True)
        (root / "ws" / ".mcode" / "config.toml").write_text(project)
        env = {"HOME": tmp, "XDG_CONFIG_HOME": str(root / "config"), "XDG_DATA_HOME": tmp}
        try:
            loaded = load_settings(root / "ws", env=env)
        except ConfigError as e:
            assert e.message and "config.toml" in e.message, e.message
            return
        assert isinstance(loaded, Settings)
    record("config loader (config.py, user and project TOML)", EXAMPLES)


# -- the stream-json stdin protocol -------------------------------------------------------------

LINE_OBJECTS = st.dictionaries(
    st.sampled_from(["type", "text", "message", "images", "instructions", "request_id"])
    | st.sampled_from(["decision", "reason", "content", "role"]),
    st.one_of(
        st.sampled_from(["user", "steer", "cancel", "compact", "approve", "allow", "deny"]),
        JSON_VALUES,
    ),
    max_size=5,
)


@fuzz
@given(
    line=st.one_of(st.text(max_size=100), JSON_VALUES.map(json.dumps), LINE_OBJECTS.map(json.dumps))
)
def test_any_stdin_line_is_a_message_or_a_bad_line_saying_why(line):
    try:
        message = parse_line(line)
    except BadLine as e:
        assert str(e)
        return
    assert isinstance(message, InputMessage)
    record("stream-json stdin (exec_input.parse_line)", EXAMPLES)


# -- redacting streamed text ----------------------------------------------------------------------

SECRET = "sk-fuzz-0123456789abcdef"


@fuzz
@given(
    parts=st.lists(st.sampled_from([SECRET, SECRET[:9], "sk-", "a", " ", "é", "\n"]), max_size=12),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_a_key_split_across_streamed_pieces_is_still_redacted(parts, cuts):
    text = "".join(parts)
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    stream = StreamRedactor([SECRET])
    shown = [stream.feed(text[a:b]) for a, b in itertools.pairwise(points)] + [stream.flush()]
    assert "".join(shown) == redact(text, [SECRET])
    assert not any(SECRET[:12] in piece for piece in shown)
    record("streamed-text redaction (secrets.StreamRedactor)", EXAMPLES)


# -- agent role files (front matter) --------------------------------------------------------------

ROLE_LINES = st.one_of(
    st.sampled_from(
        [
            "name: checker",
            "description: checks a claim",
            "model: inherit",
            "model: anthropic:claude-opus-4-1",
            "thinking: on",
            "thinking: maybe",
            "tools: Read, Grep, Bash(git *)",
            "tools: [read, 'grep']",
            "tools:",
            "  - read",
            "- Teleport",
            "description: |",
            "  a block",
            " bad: [",
            "name: [a, b]",
            "colour: red",
            "# a comment",
            "",
            "no colon here",
            "key: 'quoted # not a comment' # a comment",
            "&anchor: *alias",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
)
ROLE_FILES = st.builds(
    lambda lines, closed, body: "\n".join(["---", *lines, *(["---"] if closed else []), body]),
    st.lists(ROLE_LINES, max_size=8),
    st.booleans(),
    st.text(max_size=40),
)


@fuzz
@given(text=ROLE_FILES)
def test_any_role_file_is_a_role_or_is_refused_naming_the_file(text):
    from mcode.roles import Role, RoleError, load_role

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checker.md"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_role(path)
        except RoleError as e:
            assert e.message.startswith(f"{path}:"), e.message
            return
        assert isinstance(loaded, Role) and loaded.name
        assert loaded.tools is None or all(isinstance(t, str) for t in loaded.tools)
    record("agent role files (roles.py, frontmatter.py)", EXAMPLES)
