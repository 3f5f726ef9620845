"""Config layering, provider resolution and the errors a user sees for a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import clean_env, make_repo, mcode

from mcode.config import load_settings
from mcode.errors import ConfigError
from mcode.trust import grant


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    return tmp_path / "ws"


def env_for(tmp_path: Path, **kw: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path), **kw}


def test_no_key_means_local(ws, tmp_path):
    s = load_settings(ws, env=env_for(tmp_path))
    assert s.provider == "local" and "no API key" in s.provider_reason


@pytest.mark.parametrize(
    "keys, provider",
    [
        ({"OPENAI_API_KEY": "sk-oo-111"}, "openai"),
        ({"ANTHROPIC_API_KEY": "sk-aa-222", "OPENAI_API_KEY": "sk-oo-111"}, "anthropic"),
        (
            {
                "MINIMAX_API_KEY": "sk-mm-333",
                "ANTHROPIC_API_KEY": "sk-aa-222",
                "OPENAI_API_KEY": "sk-oo-111",
            },
            "minimax",
        ),
    ],
)
def test_key_resolution_order(ws, tmp_path, keys, provider):
    s = load_settings(ws, env=env_for(tmp_path, **keys))
    assert s.provider == provider
    assert s.api_key == keys[f"{provider.upper()}_API_KEY"]
    assert s.provider_reason == f"{provider.upper()}_API_KEY is set"
    assert s.api_key not in repr(s)


def test_minimax_preset_and_region_url(ws, tmp_path):
    s = load_settings(
        ws,
        env=env_for(tmp_path, MINIMAX_API_KEY="k", MINIMAX_BASE_URL="https://api.minimaxi.com/v1"),
    )
    assert (s.model, s.base_url, s.context_window) == (
        "MiniMax-M3",
        "https://api.minimaxi.com/v1",
        1_000_000,
    )


def test_minimax_defaults_to_its_anthropic_endpoint_with_thinking_sent(ws, tmp_path):
    s = load_settings(ws, env=env_for(tmp_path, MINIMAX_API_KEY="k"))
    assert (s.preset.wire, s.base_url, s.preset.auth_style) == (
        "anthropic",
        "https://api.minimax.io/anthropic",
        "bearer",
    )
    # The two endpoints default differently, so mcode says "on" explicitly for M3...
    assert s.thinking is True
    # ...and sends no switch for a model that cannot switch it.
    s = load_settings(ws, {"model": "MiniMax-M2.5"}, env=env_for(tmp_path, MINIMAX_API_KEY="k"))
    assert s.thinking is None


@pytest.mark.parametrize(
    "table, wire, url",
    [
        ('region = "cn"', "anthropic", "https://api.minimaxi.com/anthropic"),
        ('api = "openai"', "openai", "https://api.minimax.io/v1"),
        ('region = "cn"\napi = "openai"', "openai", "https://api.minimaxi.com/v1"),
    ],
)
def test_minimax_region_and_api_from_config(ws, tmp_path, table, wire, url):
    write(tmp_path / "cfg" / "mcode" / "config.toml", f"[providers.minimax]\n{table}\n")
    s = load_settings(ws, env=env_for(tmp_path, MINIMAX_API_KEY="k"))
    assert (s.preset.wire, s.base_url) == (wire, url)
    if wire == "openai":
        assert s.preset.reasoning_replay == "think_tags"
        assert s.preset.max_tokens_field == "max_completion_tokens"


def test_a_base_url_ending_in_v1_selects_chat_completions(ws, tmp_path):
    s = load_settings(
        ws, env=env_for(tmp_path, MINIMAX_API_KEY="k", MINIMAX_BASE_URL="http://127.0.0.1:9/v1")
    )
    assert s.preset.wire == "openai"
    s = load_settings(
        ws,
        {"provider": "minimax", "base_url": "http://127.0.0.1:9/anthropic"},
        env=env_for(tmp_path),
    )
    assert s.preset.wire == "anthropic"


@pytest.mark.parametrize(
    "url, wire",
    [
        ("https://api.minimax.io/v1/chat/completions", "openai"),
        ("https://api.minimax.io/anthropic/v1/messages", "anthropic"),
        ("https://api.minimax.io/v1/messages/", "anthropic"),
    ],
)
def test_a_full_endpoint_url_selects_its_api(ws, tmp_path, url, wire):
    # Users paste the endpoint URL from the provider's docs as the base URL.
    s = load_settings(ws, env=env_for(tmp_path, MINIMAX_API_KEY="k", MINIMAX_BASE_URL=url))
    assert s.preset.wire == wire


def test_unknown_region_api_and_replay_mode_are_errors_with_the_line(ws, tmp_path):
    cfg = tmp_path / "cfg" / "mcode" / "config.toml"
    write(cfg, '[providers.minimax]\nregion = "mars"\n')
    with pytest.raises(ConfigError, match=r"config.toml:2.*must be one of global, cn"):
        load_settings(ws, env=env_for(tmp_path, MINIMAX_API_KEY="k"))
    write(cfg, '[providers.openai]\nreasoning_replay = "sideways"\n')
    with pytest.raises(ConfigError, match=r"config.toml:2.*reasoning_replay.*must be one of"):
        load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k"))
    write(cfg, '[providers.openai]\napi = "anthropic"\n')
    with pytest.raises(ConfigError, match=r"'providers.openai.api' must be one of openai,"):
        load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k"))


def test_reasoning_replay_is_a_per_provider_setting(ws, tmp_path):
    write(
        tmp_path / "cfg" / "mcode" / "config.toml",
        '[providers.openai]\nreasoning_replay = "reasoning"\n',
    )
    s = load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k"))
    assert s.preset.reasoning_replay == "reasoning"


def test_think_in_prompt_is_a_per_provider_true_or_false(ws, tmp_path):
    cfg = write(tmp_path / "cfg" / "mcode" / "config.toml", "[providers.openai]\n")
    default = load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k")).preset
    assert (default.reasoning_replay, default.think_in_prompt) == ("mirror", False)
    write(cfg, "[providers.openai]\nthink_in_prompt = true\n")
    assert load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k")).preset.think_in_prompt
    write(cfg, '[providers.openai]\nthink_in_prompt = "yes"\n')
    with pytest.raises(ConfigError, match=r"config.toml:2.*think_in_prompt.*true or false"):
        load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k"))


def test_anthropic_sends_its_key_as_x_api_key(ws, tmp_path):
    s = load_settings(ws, env=env_for(tmp_path, ANTHROPIC_API_KEY="k"))
    assert (s.preset.wire, s.preset.auth_style, s.thinking) == ("anthropic", "x-api-key", None)


def test_layers_user_project_env_flags(ws, tmp_path):
    write(
        tmp_path / "cfg" / "mcode" / "config.toml",
        'provider = "openai"\nmax_turns = 7\nmodel = "user-model"\ncontext_window = 50000\n'
        "[network]\nmax_retries = 9\n",
    )
    write(
        ws / ".mcode" / "config.toml",
        'max_turns = 8\ncontext_window = 60000\n[permissions]\nallow = ["bash(ls*)"]\n',
    )
    env = env_for(
        tmp_path, OPENAI_API_KEY="k", MCODE_MODEL="env-model", MCODE_NETWORK_IDLE_TIMEOUT="1.5"
    )
    grant(ws, env)  # a project's allow rules apply only in a trusted folder (test_trust.py)
    s = load_settings(ws, flags={"max_turns": 3, "thinking": None}, env=env)
    assert s.provider == "openai"
    assert s.max_turns == 3  # flag beats project beats user
    assert s.context_window == 60000  # project beats user
    assert s.model == "env-model"
    assert s.allow == ["bash(ls*)"]
    assert s.network.max_retries == 9 and s.network.idle_timeout == 1.5
    assert len(s.sources) == 2


def test_unknown_key_names_file_and_line(ws, tmp_path):
    cfg = write(ws / ".mcode" / "config.toml", "max_turns = 3\n\n[network]\nretries = 2\n")
    with pytest.raises(ConfigError) as e:
        load_settings(ws, env=env_for(tmp_path))
    assert f"{cfg}:4" in str(e.value) and "network.retries" in str(e.value)


def test_wrong_type_names_file_line_and_key(ws, tmp_path):
    cfg = write(tmp_path / "cfg" / "mcode" / "config.toml", '[local]\nthreads = "many"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(ws, env=env_for(tmp_path))
    assert (
        f"{cfg}:2" in str(e.value) and "local.threads" in str(e.value) and "integer" in str(e.value)
    )


def test_toml_syntax_error_has_the_line(ws, tmp_path):
    write(ws / ".mcode" / "config.toml", 'model = "x"\nmax_turns = \n')
    with pytest.raises(ConfigError, match="line 2"):
        load_settings(ws, env=env_for(tmp_path))


def test_bad_env_value(ws, tmp_path):
    with pytest.raises(ConfigError, match="MCODE_MAX_TURNS"):
        load_settings(ws, env=env_for(tmp_path, MCODE_MAX_TURNS="lots"))


def test_project_config_cannot_redirect_the_api_key(ws, tmp_path):
    write(ws / ".mcode" / "config.toml", '[providers.openai]\nbase_url = "https://evil.example"\n')
    with pytest.raises(ConfigError, match="project config") as refused:
        load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k"))
    assert "--base-url" in (refused.value.hint or "")
    # api_key_env is refused too, and its hint names what sets it (no flag does)
    write(ws / ".mcode" / "config.toml", '[providers.openai]\napi_key_env = "GH_TOKEN"\n')
    with pytest.raises(ConfigError, match="project config") as refused:
        load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k"))
    hint = refused.value.hint or ""
    assert "user config" in hint and "--base-url" not in hint, hint
    # the same key in the user's own config is fine
    (ws / ".mcode" / "config.toml").unlink()
    write(
        tmp_path / "cfg" / "mcode" / "config.toml",
        '[providers.openai]\nbase_url = "http://127.0.0.1:9/v1"\n',
    )
    assert (
        load_settings(ws, env=env_for(tmp_path, OPENAI_API_KEY="k")).base_url
        == "http://127.0.0.1:9/v1"
    )


def test_local_gguf_model_flag(ws, tmp_path):
    s = load_settings(ws, flags={"provider": "local", "model": "/m/x.gguf"}, env=env_for(tmp_path))
    assert s.local.model_path == "/m/x.gguf" and s.context_window == 8192


def test_local_model_names_the_embedded_model_or_a_file(ws, tmp_path):
    env = env_for(tmp_path)
    for name in ("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1"):
        s = load_settings(ws, flags={"provider": "local", "model": name}, env=env)
        assert s.local.model_path is None  # the embedded model
    (ws / "weights.bin").write_bytes(b"GGUF")
    s = load_settings(ws, flags={"provider": "local", "model": str(ws / "weights.bin")}, env=env)
    assert s.local.model_path == str(ws / "weights.bin")  # any file: its bytes are checked later
    with pytest.raises(ConfigError, match="'gpt-4o' is neither the embedded model") as info:
        load_settings(ws, flags={"provider": "local", "model": "gpt-4o"}, env=env)
    assert "--provider openai" in info.value.hint


def test_unknown_provider_and_mode(ws, tmp_path):
    with pytest.raises(ConfigError, match="unknown provider"):
        load_settings(ws, flags={"provider": "nope"}, env=env_for(tmp_path))
    with pytest.raises(ConfigError, match="permission mode"):
        load_settings(ws, flags={"permission_mode": "yolo"}, env=env_for(tmp_path))


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("[tools]", "bash_timeout = -1"),
        ("[network]", "idle_timeout = 0"),
        ("[network]", "max_retries = -2"),
        ("[local]", "threads = 0"),
    ],
)
def test_out_of_range_numbers_name_file_line_and_key(ws, tmp_path, section, line):
    cfg = write(ws / ".mcode" / "config.toml", f"{section}\n{line}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(ws, env=env_for(tmp_path))
    key = section.strip("[]") + "." + line.split(" =")[0]
    assert f"{cfg}:2" in str(e.value) and key in str(e.value)
    cfg.unlink()
    with pytest.raises(ConfigError, match="MCODE_"):
        env_name = "MCODE_" + key.upper().replace(".", "_")
        load_settings(ws, env=env_for(tmp_path, **{env_name: line.split("= ")[1]}))


def test_zero_retries_and_backoff_are_allowed(ws, tmp_path):
    write(ws / ".mcode" / "config.toml", "[network]\nmax_retries = 0\nbackoff_base = 0\n")
    assert load_settings(ws, env=env_for(tmp_path)).network.max_retries == 0


def test_a_config_path_that_is_a_folder_is_an_error(ws, tmp_path):
    (tmp_path / "cfg" / "mcode" / "config.toml").mkdir(parents=True)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(ws, env=env_for(tmp_path))


@pytest.mark.parametrize(
    "model, window, switchable",
    [
        ("claude-sonnet-4-6", 200_000, True),  # a newer release than the table knows
        ("MiniMax-M2.7-highspeed-0601", 204_800, False),
        ("MiniMax-M3-20261101", 1_000_000, True),
        ("some-local-model", 128_000, False),
    ],
)
def test_model_families_cover_names_the_table_does_not_list(
    ws, tmp_path, model, window, switchable
):
    from mcode.providers.presets import model_facts

    facts = model_facts(model)
    assert (facts.context_window, facts.thinking_switchable) == (window, switchable)
    s = load_settings(ws, {"model": model}, env=env_for(tmp_path, ANTHROPIC_API_KEY="k"))
    assert s.context_window == window


def test_a_provider_table_model_beats_a_top_level_model_from_a_file(model_server, tmp_path):
    # README's example config: a MiniMax model on top, [providers.openai] for a local server.
    # `--provider openai` must send my-model there, not MiniMax-M3; --model still wins.
    server = model_server([{"text": "a"}, {"text": "b"}])
    home = tmp_path / "home"
    write(
        home / "config" / "mcode" / "config.toml",
        'provider = "minimax"\nmodel = "MiniMax-M3"\n\n'
        f'[providers.openai]\nbase_url = "{server.base_url}"\nmodel = "my-model"\n',
    )
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    env = clean_env(home)
    runs = [
        mcode("exec", "--provider", "openai", "-q", "x", cwd=repo, env=env),
        mcode("exec", "--provider", "openai", "--model", "other", "-q", "x", cwd=repo, env=env),
    ]
    assert [r.code for r in runs] == [0, 0], [r.stderr for r in runs]
    assert [r["body"]["model"] for r in server.requests] == ["my-model", "other"]


def test_provider_keys_are_environment_variables_too(model_server, tmp_path):
    # README: "Every key is also an environment variable", [providers.NAME] keys included.
    server = model_server([{"text": "a"}])
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    env = clean_env(
        home,
        MINIMAX_API_KEY="sk-test-123",
        MINIMAX_BASE_URL=server.anthropic_base_url,
        MCODE_PROVIDERS_MINIMAX_MAX_OUTPUT_TOKENS="1234",
    )
    run = mcode("exec", "-q", "x", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    (req,) = server.requests
    assert req["path"] == "/v1/messages" and req["body"]["max_tokens"] == 1234

    bad = mcode("exec", "x", cwd=repo, env={**env, "MCODE_PROVIDERS_MINIMAX_REGION": "moon"})
    assert bad.code == 2
    assert "MCODE_PROVIDERS_MINIMAX_REGION" in bad.stderr and "global, cn" in bad.stderr


def test_a_remote_provider_without_its_key_is_a_clear_error_up_front(ws, tmp_path):
    with pytest.raises(ConfigError, match="needs an API key in MINIMAX_API_KEY") as e:
        load_settings(ws, {"provider": "minimax"}, env=env_for(tmp_path))
    assert "export MINIMAX_API_KEY" in (e.value.hint or "")
    # A server of your own (vLLM, llama.cpp) may need no key.
    s = load_settings(
        ws, {"provider": "openai", "base_url": "http://127.0.0.1:8000/v1"}, env=env_for(tmp_path)
    )
    assert s.api_key is None


def test_team_limits_come_from_the_config_with_their_defaults(ws, tmp_path):
    assert load_settings(ws, env=env_for(tmp_path)).team.resolve_attempts == 1
    write(
        ws / ".mcode" / "config.toml",
        "[team]\nparallel = 4\nrounds = 1\nrate_limit = 30\nresolve_attempts = 0\n"
        'budget = "turns=40,seconds=600"\ntask_budget = "tokens=9000"\n',
    )
    team = load_settings(ws, env=env_for(tmp_path)).team
    assert (team.parallel, team.rounds, team.rate_limit, team.resolve_attempts) == (4, 1, 30, 0)
    assert (team.budget, team.task_budget) == ("turns=40,seconds=600", "tokens=9000")
    env = env_for(tmp_path, MCODE_TEAM_RESOLVE_ATTEMPTS="3")
    assert load_settings(ws, env=env).team.resolve_attempts == 3


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("resolve_attempts = -1", "0 or more"),
        ('resolve_attempts = "twice"', "an integer"),
        ("parallel = 0", "above 0"),
        ("rounds = -3", "above 0"),
        ("rate_limit = 2.5", "an integer"),
        ('budget = "turns=ten"', "'turns=ten'"),
        ('task_budget = "seconds=-5,turns=3"', "'seconds=-5'"),
        ('budget = "calls=3"', "'calls=3'"),
    ],
)
def test_bad_team_values_name_the_file_line_key_and_what_is_allowed(ws, tmp_path, line, says):
    cfg = write(tmp_path / "cfg" / "mcode" / "config.toml", f"[team]\n{line}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(ws, env=env_for(tmp_path))
    key = "team." + line.split(" =")[0]
    assert f"{cfg}:2" in str(e.value) and key in str(e.value) and says in str(e.value), e.value
    if "budget" in key:
        assert "turns=N,tokens=N,seconds=S" in (e.value.hint or "")
