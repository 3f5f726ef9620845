"""mcode lsp answers malformed, unknown and out-of-order requests with JSON-RPC errors, and
keeps serving: a raw JSON-RPC client over the server's stdio, byte for byte."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Queue
from typing import Any

from helpers import clean_env, make_repo


class RawClient:
    """Content-Length framed messages to and from ``mcode lsp`` on its stdio."""

    def __init__(self, repo: Path, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcode", "lsp"],
            cwd=repo,
            env=clean_env(home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.messages: Queue[dict[str, Any]] = Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line.strip() == b"":
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert length is not None
            self.messages.put(json.loads(out.read(length)))

    def send_raw(self, body: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def send(self, **message: Any) -> None:
        self.send_raw(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def response(self, msg_id: Any, timeout: float = 20) -> dict[str, Any]:
        """The response to ``msg_id`` (notifications from the server are skipped)."""
        while True:
            message = self.messages.get(timeout=timeout)
            if "method" not in message and message.get("id") == msg_id:
                return message


def test_malformed_unknown_and_out_of_order_requests_get_errors_and_the_server_goes_on(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    client = RawClient(repo, tmp_path / "home")
    try:
        client.send(id=1, method="textDocument/codeAction", params={})
        early = client.response(1)
        assert early["error"]["code"] == -32002  # ServerNotInitialized

        client.send_raw(b'{"jsonrpc": "2.0", "id": 2, "method": ')  # cut-off JSON
        parse = client.response(None)
        assert parse["error"]["code"] == -32700

        client.send(
            id=3, method="initialize", params={"capabilities": {}, "rootUri": repo.as_uri()}
        )
        init = client.response(3)
        caps = init["result"]["capabilities"]
        assert "mcode.task" in caps["executeCommandProvider"]["commands"]
        assert caps["codeActionProvider"]["resolveProvider"] is True
        assert "inlineCompletionProvider" in caps
        client.send(method="initialized", params={})

        client.send(id=4, method="initialize", params={"capabilities": {}})
        assert client.response(4)["error"]["code"] == -32600  # initialize twice

        client.send(id=5, method="textDocument/codeAction", params={"textDocument": 7})
        bad = client.response(5)
        assert (
            bad["error"]["code"] == -32602 and "textDocument/codeAction" in bad["error"]["message"]
        )

        client.send(id=6, method="mcode/whatever", params={})
        assert client.response(6)["error"]["code"] == -32601

        client.send(
            id=7,
            method="workspace/executeCommand",
            params={"command": "mcode.codeAction", "arguments": [{"action": "dance"}]},
        )
        action = client.response(7)
        assert (
            action["error"]["code"] == -32602
            and "unknown code action" in action["error"]["message"]
        )

        # Still serving: a well-formed request after all that is answered.
        uri = (repo / "a.py").as_uri()
        client.send(
            method="textDocument/didOpen",
            params={
                "textDocument": {
                    "uri": uri,
                    "languageId": "python",
                    "version": 1,
                    "text": "x = 1\n",
                }
            },
        )
        rng = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}
        client.send(
            id=8,
            method="textDocument/codeAction",
            params={"textDocument": {"uri": uri}, "range": rng, "context": {"diagnostics": []}},
        )
        offered = client.response(8)["result"]
        assert offered[0]["title"] == "mcode: Explain"
        assert offered[0]["command"]["command"] == "mcode.codeAction"  # no resolve support

        client.send(id=9, method="shutdown")
        assert client.response(9)["result"] is None
        client.send(id=10, method="textDocument/codeAction", params={})
        assert client.response(10)["error"]["code"] == -32600  # after shutdown
        client.send(method="exit")
        assert client.proc.wait(timeout=20) == 0
    finally:
        if client.proc.poll() is None:
            client.proc.kill()
            client.proc.wait()


def test_tcp_serves_the_same_protocol_on_loopback(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcode", "lsp", "--tcp", str(port)],
        cwd=repo,
        env=clean_env(tmp_path / "home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=20)
                break
            except OSError:
                assert time.monotonic() < deadline, "mcode lsp --tcp never listened"
                time.sleep(0.1)
        with conn:
            body = json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
            ).encode()
            conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            reader = conn.makefile("rb")
            length = 0
            while (line := reader.readline()).strip():
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answer = json.loads(reader.read(length))
        assert answer["id"] == 1
        assert answer["result"]["serverInfo"]["name"] == "mcode"
    finally:
        proc.kill()
        proc.wait()
