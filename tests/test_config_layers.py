"""README: "later wins: defaults, user, project, env, flags". Each boundary between two layers is
seen by a key set on both sides of it, through ``mcode exec`` against the scripted model server:
the user file over the defaults (provider and server), the project file over the user file
(model), the environment over the project file (context window), a flag over the environment
(permission mode). The request and ``session.started`` say which layer won."""

from __future__ import annotations

from pathlib import Path

from helpers import clean_env, make_repo, mcode


def test_each_layer_beats_the_one_before_it(model_server, tmp_path: Path) -> None:
    server = model_server([{"text": "a"}, {"text": "b"}])
    home = tmp_path / "home"
    user = home / "config" / "mcode" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(
        'provider = "openai"\nmodel = "user-model"\ncontext_window = 50000\n'
        'permission_mode = "read-only"\n\n'
        f'[providers.openai]\nbase_url = "{server.base_url}"\n'
    )
    project = 'model = "project-model"\ncontext_window = 60000\npermission_mode = "read-only"\n'
    repo = make_repo(tmp_path / "repo", {".mcode/config.toml": project})
    env = clean_env(home, MCODE_CONTEXT_WINDOW="70000", MCODE_PERMISSION_MODE="auto-edit")

    run = mcode("exec", "--output-format", "stream-json", "hi", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    started = run.events()[0]["data"]
    assert server.requests[0]["body"]["model"] == "project-model"  # project over user
    assert started["model"] == "project-model" and started["provider"] == "openai"
    assert started["context_window"] == 70000  # environment over project
    assert started["permission_mode"] == "auto-edit"  # environment over both files

    flagged = mcode(
        "exec", "--output-format", "stream-json", "--permission-mode", "full-auto",
        "--model", "flag-model", "hi", cwd=repo, env=env,
    )  # fmt: skip
    assert flagged.code == 0, flagged.stderr
    started = flagged.events()[0]["data"]
    assert started["permission_mode"] == "full-auto"  # flag over environment
    assert server.requests[1]["body"]["model"] == "flag-model"  # flag over project
