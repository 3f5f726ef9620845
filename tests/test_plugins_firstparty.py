"""The first-party plugins (plugins/, installed as mcode.plugins), each enabled as a user would
(`mcode plugins enable NAME`) and used through `mcode exec` against the scripted model server:
git's commands on a real repository, the review role, python's pytest tool on real failing
tests, web's web_fetch and web_search against loopback HTTP servers; and a Python tool offered
by an installed package's entry point."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import exec_args, make_repo, mcode, tool_messages


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n\n\n"
            "def test_zero():\n    assert add(0, 0) == 0\n",
        },
    )


def enable(name: str, repo: Path, env: dict[str, str]) -> None:
    run = mcode("plugins", "enable", name, cwd=repo, env=env)
    assert run.code == 0, run.stderr


def call(id_: str, name: str, /, **arguments) -> dict:
    return {"tool_calls": [{"id": id_, "name": name, "arguments": arguments}]}


def result(server, i: int) -> str:
    return tool_messages(server.bodies[i])[-1]["content"]


def full_auto(server, *more: str) -> list[str]:
    return exec_args(server, "--output-format", "json", "--permission-mode", "full-auto", *more)


def test_git_commit_command_commits_through_the_model(model_server, repo, env):
    enable("git", repo, env)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    server = model_server(
        [
            call(
                "c1",
                "bash",
                command="git add -u && git -c user.email=t@example.com -c user.name=t commit -qm 'Fix add: it subtracted'",
            ),
            {"text": "committed"},
            {"text": "## What\nFixes add."},
        ]
    )
    run = mcode(*full_auto(server), "/commit mention the bug", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    prompt = json.dumps(server.bodies[0]["messages"][-1])
    assert "Make one git commit" in prompt and "mention the bug" in prompt
    log = subprocess.run(
        ["git", "log", "-1", "--format=%s"], cwd=repo, capture_output=True, text=True
    )
    assert log.stdout.strip() == "Fix add: it subtracted"
    run = mcode(*full_auto(server), "/pr-description develop", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    prompt = json.dumps(server.bodies[2]["messages"][-1])
    assert "pull-request description" in prompt and "`develop`" in prompt


def test_the_review_role_is_a_sub_agent_with_its_own_prompt_and_tools(model_server, repo, env):
    enable("review", repo, env)
    server = model_server(
        [
            call("c1", "task", description="review", prompt="Review calc.py", role="review"),
            {"text": "VERDICT: reject\nFINDINGS:\n- calc.py:2 subtracts"},
            {"text": "rejected"},
        ]
    )
    run = mcode(*full_auto(server), "review it", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    sub = server.bodies[1]
    assert sub["messages"][0]["content"].startswith("You are a reviewer of mcode")
    assert sorted(t["function"]["name"] for t in sub["tools"]) == [
        "bash",
        "glob",
        "grep",
        "ls",
        "read",
    ]
    assert "VERDICT: reject" in result(server, 2)


def test_the_pytest_tool_reports_each_failure_as_a_record(model_server, repo, env):
    enable("python", repo, env)
    server = model_server(
        [call("c1", "pytest"), call("c2", "pytest", k="zero"), {"text": "add is broken"}]
    )
    run = mcode(*full_auto(server), "test it", cwd=repo, env=env, timeout=180)
    assert run.code == 0, run.stderr
    names = [t["function"]["name"] for t in server.bodies[0]["tools"]]
    assert names.index("pytest") > names.index("task")  # after the built-in tools
    report = result(server, 1)
    assert report.startswith("1 passed, 1 failed, 0 errors, 0 skipped")
    assert "FAILED test_calc.py::test_add" in report
    assert "at test_calc.py:5" in report
    assert "assert 0 == 4" in report
    assert result(server, 2).startswith("1 passed, 0 failed")


PAGE = """<html><head><title>The Guide</title><style>p{color:red}</style>
<script>alert('x')</script></head><body><nav>Home | About</nav>
<h1>Install</h1><p>Run <code>pip install mcode</code> and read the
<a href="/docs">docs</a>.</p><ul><li>fast</li><li>small</li></ul>
<pre>mcode exec 'hi'</pre></body></html>"""


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/page.html":
            self._send(200, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/old":
            self.send_response(301)
            self.send_header("Location", "/page.html")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/logo.png":
            self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(2000))
        elif path == "/big.txt":
            self._send(200, "text/plain", b"x" * 3_000_000)
        elif path == "/search":
            query = self.path.split("q=", 1)[1].split("&")[0]
            results = [
                {"title": f"About {query}", "url": "http://example.test/a", "content": "first hit"},
                {"title": "Second", "url": "http://example.test/b", "content": "another"},
            ]
            self._send(200, "application/json", json.dumps({"results": results}).encode())
        else:
            self._send(404, "text/plain", b"not here")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_web_fetch_turns_pages_into_markdown_and_handles_the_rest(model_server, repo, env, site):
    enable("web", repo, env)
    urls = ["/old", "/logo.png", "/big.txt", "/missing", "/loop"]
    server = model_server(
        [call(f"c{i}", "web_fetch", url=site + u) for i, u in enumerate(urls)] + [{"text": "done"}]
    )
    run = mcode(*full_auto(server), "read the docs", cwd=repo, env=env, timeout=120)
    assert run.code == 0, run.stderr
    page = result(server, 1)
    assert f"URL: {site}/page.html" in page and "redirected from" in page
    assert "# The Guide" in page and "# Install" in page
    assert "`pip install mcode`" in page and f"[docs]({site}/docs)" in page
    assert "- fast" in page and "```\nmcode exec 'hi'\n```" in page
    assert "alert" not in page and "color:red" not in page and "Home | About" not in page
    image = result(server, 2)
    assert "not shown" in image and "image/png" in image and "2,008 bytes" in image
    big = result(server, 3)
    assert "cut at 2,000,000 bytes" in big and "cut at 40,000 characters" in big
    assert len(big) < 41_000
    assert "answered HTTP 404" in result(server, 4)
    assert "redirected more than 5 times" in result(server, 5)


def test_web_search_is_clearly_unavailable_until_a_backend_is_configured(
    model_server, repo, env, home, site
):
    enable("web", repo, env)
    server = model_server([call("c1", "web_search", query="mcode"), {"text": "none"}])
    run = mcode(*full_auto(server), "search", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    search = next(t for t in server.bodies[0]["tools"] if t["function"]["name"] == "web_search")
    assert "UNAVAILABLE" in search["function"]["description"]
    assert "web_search is unavailable: no search backend is configured" in result(server, 1)
    assert "search_url" in result(server, 1)
    (home / "config" / "mcode" / "config.toml").write_text(
        f'[plugins.web]\nsearch_url = "{site}"\n'
    )
    server = model_server([call("c1", "web_search", query="mcode", limit=1), {"text": "found"}])
    run = mcode(*full_auto(server), "search", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    hits = result(server, 1)
    assert "1. About mcode\n   http://example.test/a\n   first hit" in hits
    assert "Second" not in hits  # limit 1


ENTRY_TOOL = """\
from typing import Any, ClassVar
from mcode.tools.base import Tool, ToolResult

class Shout(Tool):
    name = "shout"
    description = "Upper-case a text."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    permission = "read"

    async def run(self, args, ctx):
        return ToolResult(args["text"].upper())
"""


def test_an_installed_packages_entry_point_tool_is_offered(model_server, repo, env, tmp_path):
    site_dir = tmp_path / "site"
    (site_dir / "shouting").mkdir(parents=True)
    (site_dir / "shouting" / "__init__.py").write_text(ENTRY_TOOL)
    dist = site_dir / "shouting-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shouting\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mcode.tools]\nshout = shouting:Shout\n")
    env = {**env, "PYTHONPATH": str(site_dir)}
    server = model_server([call("c1", "shout", text="hi"), {"text": "HI"}])
    run = mcode(*exec_args(server, "--output-format", "json"), "shout", cwd=repo, env=env)
    assert run.code == 0, run.stderr
    assert result(server, 1) == "HI"


def _no_sandbox() -> str:
    """Why bwrap cannot run here ("" when it can)."""
    from mcode.tools.sandbox import SandboxPolicy, problem

    failure = problem(SandboxPolicy(writable=(Path("/tmp"),)))
    return "" if failure is None else failure.message


@pytest.mark.skipif(bool(_no_sandbox()), reason=_no_sandbox() or "bwrap works")
@pytest.mark.parametrize("mode", ["workspace-write", "read-only"])
def test_the_pytest_tool_runs_the_tests_in_the_sandbox(model_server, repo, env, mode, tmp_path):
    """The project's tests are code the model may have written: they run sandboxed, and the
    tool still reads their report (a read-only sandbox's /tmp is private)."""
    outside = Path("/var/tmp") / f"mcode-pytest-{os.getpid()}-{tmp_path.name}"
    (repo / "test_escape.py").write_text(
        "from pathlib import Path\n\n\ndef test_escape():\n"
        f"    Path({str(outside)!r}).write_text('x')\n"
    )
    enable("python", repo, env)
    server = model_server([call("c1", "pytest"), {"text": "done"}])
    try:
        run = mcode(*full_auto(server, "--sandbox", mode), "test", cwd=repo, env=env, timeout=180)
        assert run.code == 0, run.stderr
        report = result(server, 1)
        assert report.startswith("1 passed, 2 failed, 0 errors"), report
        assert "FAILED test_escape.py::test_escape" in report
        assert "Read-only file system" in report
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)
