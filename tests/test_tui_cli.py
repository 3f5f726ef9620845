"""`mcode` on the command line: a first argument that is not a subcommand opens the TUI, and a
bad session id is said on the terminal before the screen changes (exit 2)."""

from __future__ import annotations

from helpers import clean_env, make_repo, mcode

from mcode.cli import _opens_tui, subcommands


def test_a_first_argument_that_names_a_subcommand_runs_it_anything_else_opens_the_tui():
    assert _opens_tui([])
    assert _opens_tui(["fix the failing test"])
    assert _opens_tui(["--resume", "abc"])
    assert _opens_tui(["--model", "exec"])  # a flag's value is not a subcommand
    for argv in (["exec", "hi"], ["sessions"], ["undo"], ["trust"], ["serve"], ["--version"]):
        assert not _opens_tui(argv)
    # Every subcommand the parser has, also those added after the TUI (read, not listed).
    assert {"exec", "sessions", "undo", "trust", "serve"} <= subcommands()
    assert not any(_opens_tui([name]) for name in subcommands())


def test_resuming_an_unknown_session_is_said_before_the_tui_opens(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    env = clean_env(tmp_path / "home")
    run = mcode(
        "--resume",
        "nosuchsession",
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        cwd=repo,
        env=env,
        timeout=60,
    )
    assert run.code == 2
    assert "nosuchsession" in run.stderr and "mcode: error:" in run.stderr
    assert "\x1b[?1049h" not in run.stdout  # the alternate screen was never entered


def test_the_exec_subcommand_still_parses_its_own_flags(tmp_path):
    run = mcode("exec", "--help", cwd=tmp_path, env=clean_env(tmp_path / "home"), timeout=60)
    assert run.code == 0 and "--output-format" in run.stdout
