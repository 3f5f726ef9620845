"""Headless Neovim as a real client of ``mcode lsp``: it attaches the server to a buffer, asks for
code actions, runs "Fix this", and its own workspace/applyEdit handler changes the buffer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, make_repo

pytestmark = pytest.mark.skipif(shutil.which("nvim") is None, reason="nvim not installed")

SCRIPT = r"""
local out = vim.env.NVIM_TEST_OUT
local function finish(result)
  local f = io.open(out, "w")
  f:write(vim.fn.json_encode(result))
  f:close()
  vim.cmd("qa!")
end

local ok, err = pcall(function()
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.NVIM_TEST_FILE))
  local buf = vim.api.nvim_get_current_buf()
  local id = vim.lsp.start_client({
    name = "mcode",
    cmd = vim.fn.json_decode(vim.env.NVIM_TEST_CMD),
    root_dir = vim.env.NVIM_TEST_ROOT,
    flags = { debounce_text_changes = 0 },
  })
  vim.lsp.buf_attach_client(buf, id)
  local client = vim.lsp.get_client_by_id(id)
  assert(vim.wait(20000, function() return client.initialized end, 20), "no initialize")

  local range = { start = { line = 1, character = 4 }, ["end"] = { line = 1, character = 16 } }
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    range = range,
    context = { diagnostics = { { range = range, message = "add subtracts", source = "nvim" } } },
  }
  local answer = client.request_sync("textDocument/codeAction", params, 20000, buf)
  assert(answer and answer.result, "no code actions: " .. vim.inspect(answer))
  local titles, fix = {}, nil
  for _, action in ipairs(answer.result) do
    table.insert(titles, action.title)
    if action.title == "mcode: Fix this" then fix = action end
  end
  assert(fix, "no Fix this among " .. vim.inspect(titles))
  if not fix.command then
    fix = client.request_sync("codeAction/resolve", fix, 20000, buf).result
  end

  local done, summary = false, nil
  client.request("workspace/executeCommand", fix.command, function(e, result)
    summary = result or { error = e }
    done = true
  end, buf)
  assert(vim.wait(60000, function() return done end, 20), "the task did not finish")
  finish({
    titles = titles,
    summary = summary,
    lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false),
    modified = vim.api.nvim_buf_get_option(buf, "modified"),
  })
end)
if not ok then finish({ error = tostring(err) }) end
"""


def test_neovim_runs_a_code_action_and_its_buffer_gets_the_edit(
    tmp_path: Path, model_server: Any
) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": "def add(a, b):\n    return a - b\n"})
    server = model_server(
        [
            {"tool_calls": [{"id": "r1", "name": "read", "arguments": {"path": "calc.py"}}]},
            {
                "tool_calls": [
                    {
                        "id": "e1",
                        "name": "edit",
                        "arguments": {
                            "path": "calc.py",
                            "old_string": "a - b",
                            "new_string": "a + b",
                        },
                    }
                ]
            },
            {"text": "add now adds."},
        ]
    )
    home = tmp_path / "home"
    script = tmp_path / "attach.lua"
    script.write_text(SCRIPT)
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "mcode", "lsp", "--provider", "openai", "--base-url"]
    cmd += [server.base_url, "--model", "test-model", "--permission-mode", "auto-edit"]
    env = clean_env(
        home,
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        NVIM_TEST_OUT=str(out),
        NVIM_TEST_FILE=str(repo / "calc.py"),
        NVIM_TEST_ROOT=str(repo),
        NVIM_TEST_CMD=json.dumps(cmd),
    )
    nvim = subprocess.run(
        ["nvim", "--headless", "-u", "NONE", "-i", "NONE", "-n", "-c", f"luafile {script}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), nvim.stderr
    result = json.loads(out.read_text())
    assert "error" not in result, result
    assert "mcode: Fix this" in result["titles"]
    assert result["summary"]["reason"] == "completed"
    assert result["lines"] == ["def add(a, b):", "    return a + b"]
    assert result["modified"] is True  # changed through the editor (undoable there) ...
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"  # ... and on disk
