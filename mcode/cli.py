"""The ``mcode`` command line. Imports only the standard library at start-up; each subcommand
imports what it needs when it runs, so ``mcode --version`` stays instant."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mcode import __version__

EXIT_CODES = """\
exit codes:
  0    the task finished
  1    an error ended it (the model API failed after retries, the store failed, the sandbox
       could not start)
  2    usage error (bad flags, a bad config file)
  3    a limit was reached (--max-turns, --max-time, --max-tokens, --max-cost)
  4    the task finished, but a tool call it needed was denied (permission mode or a rule)
  130  interrupted (Ctrl-C, SIGTERM, stream-json's stdout closed, or the last turn was
       cancelled by {"type":"cancel"})
with --input-format stream-json, the code is the last turn's
"""


class _Parser(argparse.ArgumentParser):
    """argparse, keeping the message of the error it exits with (``mcode exec
    --output-format json`` prints it as a result object too)."""

    failure: str | None = None

    def error(self, message: str) -> Any:
        _Parser.failure = f"{self.prog}: {message}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mcode",
        description="A coding agent that reads, edits and runs your repository. With no "
        "COMMAND (or a prompt first), mcode opens the TUI: mcode [PROMPT] [--resume ID] ...",
    )
    parser.add_argument("--version", action="version", version=f"mcode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "exec",
        help="run one task headless (scripts, CI)",
        description="Run one task without a UI and print the result.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompt", nargs="?", help="the task; '-' (or nothing, with a pipe) reads stdin")
    p.add_argument(
        "--output-format",
        choices=["text", "json", "stream-json"],
        default="text",
        help="text: the final answer; json: one result object; "
        "stream-json: every event as JSON lines",
    )
    p.add_argument(
        "--input-format",
        choices=["text", "stream-json"],
        default="text",
        help="text: the prompt is the argument (or stdin); stream-json: read JSON lines on stdin "
        "while running: user messages, steer and cancel (see README)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="text format: only the answer on stdout, and on stderr only errors and retries "
        "that have gone on a while",
    )
    add_session_flags(p, headless=True)
    p.add_argument(
        "--sandbox",
        choices=["read-only", "workspace-write", "danger-full-access"],
        help="what commands may touch: read-only, workspace-write (default: the workspace and "
        "--add-dir folders writable, no network) or danger-full-access (no sandbox)",
    )
    p.add_argument(
        "--max-time",
        type=_positive_float,
        metavar="SECONDS",
        help="stop the run after this much wall time (what runs is stopped as a cancel stops "
        "it); exit 3",
    )
    p.add_argument(
        "--max-tokens",
        type=_positive_int,
        metavar="N",
        help="stop the run once its model calls used N tokens (input + output); exit 3",
    )
    p.add_argument(
        "--max-cost",
        type=_positive_float,
        metavar="USD",
        help="stop the run once it cost this much at the model's list price (known models "
        "only); exit 3",
    )
    p.add_argument(
        "--image", action="append", default=[], metavar="FILE", help="attach an image (repeatable)"
    )
    p.add_argument(
        "--screenshot",
        action="store_true",
        help="attach a capture of the screen (DISPLAY, or the --virtual-display) to the prompt",
    )
    p.add_argument(
        "--allow-computer",
        action="store_true",
        help="offer the computer tool (screen, mouse, keyboard) and let it run without asking",
    )
    p.add_argument(
        "--virtual-display",
        action="store_true",
        help="give the computer tool an X server of its own (Xvfb), stopped at exit",
    )
    p.add_argument(
        "--virtual-display-size",
        type=_screen_size,
        metavar="WxH",
        help="the --virtual-display's screen (default 1280x800)",
    )
    p.add_argument(
        "--virtual-display-app",
        type=_given("a command"),
        metavar="CMD",
        help="start CMD inside the --virtual-display",
    )
    add_resume_flags(p, after="finish its interrupted turn")
    p.add_argument(
        "--fork-at",
        type=_positive_int,
        metavar="N",
        help="with --resume/--continue: run in a new session whose history is that session's "
        "before its N-th user message (the original is left as it was)",
    )
    p.add_argument(
        "--undo-files",
        action="store_true",
        help="with --fork-at: also undo in the workspace the file changes of turns N and later",
    )
    team = p.add_argument_group("agent team (see README: Agent team)")
    team.add_argument(
        "--team",
        action="store_true",
        help="plan the task into stages and run it with concurrent producers, each in its own "
        "git worktree, a verifier per result and merges into this branch",
    )
    team.add_argument(
        "--parallel", type=_positive_int, help="producers at once (default 2; [team] parallel)"
    )
    team.add_argument(
        "--team-rounds",
        type=_positive_int,
        metavar="N",
        help="verifications a task gets before it fails (default 3)",
    )
    team.add_argument(
        "--rate-limit",
        type=_positive_int,
        metavar="PER_MINUTE",
        help="model requests per minute, all agents together (default 200, MiniMax M3's)",
    )
    team.add_argument(
        "--team-budget",
        metavar="LIMITS",
        help="the whole run's limits: turns=N,tokens=N,seconds=S (any of them)",
    )
    team.add_argument("--task-budget", metavar="LIMITS", help="each task's limits, the same keys")

    c = sub.add_parser(
        "chat",
        help="talk to the agent in this folder, a line at a time (--plain)",
        description="An interactive session. --plain: a line-mode REPL for terminals, dumb "
        "terminals and pipes (Enter while a turn runs steers it; Ctrl-C interrupts, twice quits).",
    )
    c.add_argument("prompt", nargs="?", help="a first message to send")
    c.add_argument("--plain", action="store_true", help="the line-mode REPL, not the full screen")
    add_session_flags(c, headless=False)
    add_resume_flags(c, after="show its history")

    d = sub.add_parser(
        "doctor",
        help="check what works here: sandbox, ripgrep, git, display, models, config, store",
        description="Check each part mcode needs and say ok, warn or fail, with what to do. "
        "Exit 0 when nothing failed, 1 otherwise.",
    )
    d.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    d.add_argument("--cwd", type=_given("a folder"), help="the folder (default: the current one)")

    s = sub.add_parser(
        "sessions",
        help="list stored sessions",
        description="List the sessions of this folder, newest first: id, last activity, "
        "provider/model and first prompt.",
    )
    s.add_argument("--all", action="store_true", help="all folders, not only this one")
    s.add_argument("--limit", type=_positive_int, default=20, help="at most this many (20)")
    s.add_argument("--cwd", type=_given("a folder"), help="the folder (default: the current one)")

    u = sub.add_parser(
        "undo",
        help="restore the files the last turn edited",
        description="Restore every file that the last turn of a session wrote or edited to what\n"
        "it was before that turn; run it again to go back one more turn. Side effects of\n"
        "bash commands are not undone.",
        epilog="exit codes:\n  0    done (or nothing to undo)\n  1    files skipped or not "
        "writable (or the session is running)\n  2    no such session",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    u.add_argument(
        "--resume",
        type=_given("a session id"),
        metavar="ID",
        help="the session (default: the newest in this folder with a change to undo)",
    )
    u.add_argument("--force", action="store_true", help="restore files changed since the turn too")
    u.add_argument("--dry-run", action="store_true", help="show what it would do, change nothing")
    u.add_argument(
        "--cwd",
        type=_given("a folder"),
        help="the folder whose latest session is meant (default: the current one)",
    )

    t = sub.add_parser(
        "trust",
        help="trust a folder's own config and AGENTS.md",
        description="Trust the files of a folder (and every folder inside it): until then its\n"
        ".mcode/config.toml cannot widen permissions (permission_mode, allow rules,\n"
        "allow_outside, add_dirs, a model file) and its AGENTS.md is not read.",
        epilog="exit codes:\n  0    done\n  1    --revoke: the folder was not trusted itself\n"
        "  2    not a folder (or home, or /), or the trust record is damaged",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("dir", nargs="?", metavar="DIR", help="the folder (default: the current one)")
    how = t.add_mutually_exclusive_group()
    how.add_argument("--list", action="store_true", help="list the trusted folders")
    how.add_argument("--revoke", action="store_true", help="stop trusting DIR")

    a = sub.add_parser(
        "acp",
        help="talk to an editor over the Agent Client Protocol (stdio)",
        description="Run as an Agent Client Protocol agent on stdin/stdout, for editors that "
        "speak it (Zed, JetBrains, Neovim, Emacs). Each editor session is a stored mcode "
        "session (mcode sessions, mcode exec --resume). Diagnostics go to stderr.",
    )
    a.add_argument(
        "--provider", choices=["openai", "anthropic", "minimax", "local", "vllm", "sglang"]
    )
    a.add_argument("--model", type=_given("a model name"), help="model name, or a .gguf path")
    a.add_argument("--base-url", type=_given("a URL"), help="API base URL")
    a.add_argument("--thinking", choices=["on", "off"], help="model thinking, where switchable")
    a.add_argument(
        "--permission-mode",
        choices=["read-only", "ask", "auto-edit", "full-auto"],
        help="the mode sessions start in (the editor can switch it); default: the config's, "
        "else ask",
    )
    a.add_argument("--max-turns", type=_positive_int, help="model calls per prompt (no cap)")
    a.add_argument("--context-window", type=_positive_int, metavar="TOKENS")
    g = sub.add_parser(
        "plugins",
        help="list, enable or disable plugins",
        description="List the plugins this folder's sessions load (bundled, user, project),\n"
        "or turn one on or off for every folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("action", choices=["list", "enable", "disable"])
    g.add_argument("name", nargs="?", help="the plugin (enable, disable)")
    g.add_argument("--cwd", type=_given("a folder"), help="the folder (default: the current one)")

    v = sub.add_parser(
        "serve",
        help="serve a local model over an OpenAI-compatible HTTP API",
        description="Serve a local model at /v1/chat/completions, /v1/models, /health and "
        "/metrics. Prints 'mcode serve: http://HOST:PORT/v1 model=NAME' once it listens.",
    )
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    v.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    v.add_argument("--engine", choices=["llama_cpp", "torch"], default="llama_cpp")
    v.add_argument(
        "--model",
        default="default",
        help="a .gguf path, a Hugging Face safetensors folder (--engine torch), or 'default' "
        "(the embedded SmolLM2)",
    )
    v.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    v.add_argument(
        "--context", type=_positive_int, default=8192, metavar="TOKENS", help="window (8192)"
    )
    v.add_argument("--threads", type=_positive_int, help="CPU threads (default: half the CPUs)")
    v.add_argument(
        "--attention",
        default="dense",
        help="the torch engine's attention: dense, msa, or one of them per layer (dense)",
    )
    lsp = sub.add_parser(
        "lsp",
        help="the language server for editors (stdio)",
        description="Serve the Language Server Protocol on stdio (or --tcp PORT on 127.0.0.1): "
        "code actions, commands (mcode.task, mcode.cancel, ...), inline completion. Each task "
        "is a stored session (mcode exec --resume ID continues it). See README: Editors.",
    )
    lsp.add_argument("--tcp", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT instead")
    lsp.add_argument(
        "--provider", choices=["openai", "anthropic", "minimax", "local", "vllm", "sglang"]
    )
    lsp.add_argument("--model", type=_given("a model name"))
    lsp.add_argument("--base-url", type=_given("a URL"))
    lsp.add_argument(
        "--permission-mode",
        choices=["read-only", "ask", "auto-edit", "full-auto"],
        help="what tools may do without asking; asks go to the editor (window/showMessageRequest)",
    )
    lsp.add_argument(
        "--approval-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="how long a question in the editor waits before the call is denied (default 300)",
    )
    lsp.add_argument(
        "--cwd", type=_given("a folder"), help="the workspace if the editor names none"
    )
    return parser


def add_session_flags(p: argparse.ArgumentParser, *, headless: bool) -> None:
    """The flags that shape a session (provider, model, thinking, permissions, limits), shared
    by ``mcode exec`` and the TUI; :func:`mcode.config.flag_settings` reads them back."""
    p.add_argument(
        "--provider", choices=["openai", "anthropic", "minimax", "local", "vllm", "sglang"]
    )
    p.add_argument(
        "--model",
        type=_given("a model name"),
        help="model name, or a .gguf path for --provider local",
    )
    p.add_argument(
        "--base-url", type=_given("a URL"), help="API base URL, e.g. http://127.0.0.1:8080/v1"
    )
    p.add_argument("--thinking", choices=["on", "off"], help="model thinking, where switchable")
    p.add_argument(
        "--permission-mode",
        choices=["read-only", "ask", "auto-edit", "full-auto"],
        help="what tools may do without asking; a headless run denies what would ask"
        if headless
        else "what tools may do without asking (default ask: a dialog asks you)",
    )
    if headless:
        p.add_argument(
            "--approval-timeout",
            type=_positive_float,
            metavar="SECONDS",
            help="stream-json in and out: how long a permission.asked waits for its approve "
            "line before the call is denied (default 300)",
        )
    p.add_argument(
        "--max-turns",
        type=_positive_int,
        help="stop a task after this many model calls (default: no cap)",
    )
    p.add_argument(
        "--context-window",
        type=_positive_int,
        metavar="TOKENS",
        help="the model's context window (default: known per model; shown in session.started)",
    )
    p.add_argument(
        "--add-dir",
        action="append",
        default=[],
        type=_folder,
        metavar="DIR",
        help="also allow tools to touch this folder",
    )


def add_resume_flags(p: argparse.ArgumentParser, *, after: str) -> None:
    """``--continue`` / ``--resume ID`` (one of them) and ``--cwd``; ``after``: what a
    resume with no prompt does."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help=f"continue the most recent session in this folder; with no prompt, {after}",
    )
    group.add_argument(
        "--resume",
        type=_given("a session id"),
        metavar="ID",
        help="continue the session with this id (a unique prefix will do; see mcode sessions); "
        f"with no prompt, {after}",
    )
    p.add_argument(
        "--cwd", type=_given("a folder"), help="the workspace (default: the current folder)"
    )


def build_tui_parser() -> argparse.ArgumentParser:
    """``mcode [PROMPT]``: the TUI, when the first argument is not a subcommand."""
    p = _Parser(
        prog="mcode",
        description="Open the TUI on this folder (and submit PROMPT, if given). Subcommands: "
        + ", ".join(sorted(subcommands()))
        + " (mcode COMMAND --help).",
    )
    p.add_argument("--version", action="version", version=f"mcode {__version__}")
    p.add_argument("prompt", nargs="?", help="a first task to submit")
    add_session_flags(p, headless=False)
    p.add_argument(
        "--image", action="append", default=[], metavar="FILE", help="attach an image (repeatable)"
    )
    add_resume_flags(p, after="show its history")
    p.add_argument(
        "--inline",
        action="store_true",
        help="draw below the prompt instead of on the full screen (Textual's inline mode)",
    )
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _serve(args: argparse.Namespace) -> int:
    from mcode.errors import MCodeError

    try:
        from mcode.local_backend.server import serve
    except ImportError as e:
        print(
            f"mcode serve needs FastAPI and uvicorn ({e}); run: pip install 'mcode[serve]'",
            file=sys.stderr,
        )
        return 2
    try:
        return serve(
            host=args.host,
            port=args.port,
            engine_kind=args.engine,
            model=args.model,
            api_key=args.api_key,
            n_ctx=args.context,
            threads=args.threads,
            attention=args.attention,
        )
    except MCodeError as e:
        print(f"mcode serve: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def _screen_size(text: str) -> tuple[int, int]:
    from mcode.computer.display import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _given(what: str) -> Any:
    """An argparse type for a flag whose value must not be empty: ``--resume ""`` is a
    mistake (a variable that was not set), not a request for the default."""

    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(
                f"expected {what}, got an empty value (leave the flag out for the default)"
            )
        return text

    return check


def _folder(text: str) -> str:
    """An existing folder, as an absolute path (relative to the current folder)."""
    path = os.path.abspath(os.path.expanduser(text)) if text.strip() else ""
    if not path or not os.path.isdir(path):
        what = "is not a folder" if path and os.path.exists(path) else "no such folder"
        raise argparse.ArgumentTypeError(
            f"{text!r}: {what} (give an existing folder; create it first if tools should "
            "write there)"
        )
    return path


def _wants_json(argv: list[str]) -> bool:
    """Whether ``argv`` asks ``mcode exec`` for ``--output-format json`` (looked at when the
    arguments could not be parsed, so loosely)."""
    if "exec" not in argv:
        return False
    after = argv[argv.index("exec") + 1 :]
    pairs = zip(after, [*after[1:], ""], strict=True)
    return any(
        a == "--output-format=json" or (a, b) == ("--output-format", "json") for a, b in pairs
    )


def subcommands() -> set[str]:
    """The subcommands' names, read from the parser (a subcommand added there is one here)."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _opens_tui(argv: list[str]) -> bool:
    """Whether ``argv`` is for the TUI: anything but a subcommand first (``--version`` and
    ``--help`` alone keep the main parser, which lists the subcommands)."""
    if not argv:
        return True
    return argv[0] not in subcommands() and argv[0] not in ("--version", "-h", "--help")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if _opens_tui(argv):
        args = build_tui_parser().parse_args(argv)
        from mcode.tui import main as tui_main

        return tui_main(args)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        if e.code == 2 and _Parser.failure and _wants_json(argv):
            import json

            # A script that asked for JSON gets an object on every exit, bad flags included.
            error = {"message": _Parser.failure, "hint": "see mcode exec --help"}
            result = {"session_id": None, "result": None, "reason": "usage", "exit_code": 2}
            print(json.dumps({**result, "error": error}), flush=True)
        raise
    if args.command == "exec":
        from mcode.exec import main as exec_main

        return exec_main(args)
    if args.command == "chat":
        if not args.plain:  # the full screen: the TUI, with the same flags
            from mcode.tui import main as tui_main

            return tui_main(build_tui_parser().parse_args(argv[argv.index("chat") + 1 :]))
        from mcode.repl.app import main as repl_main

        return repl_main(args)
    if args.command == "sessions":
        from mcode.exec import list_sessions

        return list_sessions(args)
    if args.command == "trust":
        from mcode.trust import main as trust_main

        return trust_main(args)
    if args.command == "undo":
        from mcode.undo import main as undo_main

        return undo_main(args)
    if args.command == "acp":
        from mcode.acp import main as acp_main

        return acp_main(args)
    if args.command == "plugins":
        from mcode.plugin_host.cli import main as plugins_main

        return plugins_main(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "lsp":
        from mcode.lsp import main as lsp_main

        return lsp_main(args)
    if args.command == "doctor":
        from mcode.doctor import main as doctor_main

        return doctor_main(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
