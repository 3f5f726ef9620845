"""The JSON-RPC rules pygls leaves to the server: every request gets an answer.

pygls dispatches what it can read and logs the rest. A client is then left waiting for a
response that never comes, which for an editor means a hung request. This protocol answers
each case the LSP specification names, and the server goes on:

    a body that is not JSON              -> -32700 ParseError (id null)
    a request whose params do not fit    -> -32602 InvalidParams (its own id)
    a request before ``initialize``      -> -32002 ServerNotInitialized
    a second ``initialize``              -> -32600 InvalidRequest
    a request after ``shutdown``         -> -32600 InvalidRequest
    an unknown method                    -> -32601 MethodNotFound (pygls)

Notifications get no answer by definition: one before ``initialize`` (other than ``exit``) is
dropped, as the specification says, and one that cannot be read is logged.

It also keeps the ``workDoneToken`` a client sends with ``workspace/executeCommand``, by request
id until the request is answered (``work_done_token``): the task's progress is reported on it,
as the client asked, instead of on a token the server creates (pygls hands a command only its
arguments).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol

logger = logging.getLogger(__name__)

# Methods a client may send before initialize (besides initialize itself).
_BEFORE_INITIALIZE = {types.EXIT, "$/cancelRequest", "$/setTrace"}


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A message whose params could not be structured; answered with InvalidParams."""

    id: Any
    method: str
    reason: str
    jsonrpc: str = "2.0"


class StrictProtocol(LanguageServerProtocol):
    """:class:`LanguageServerProtocol` that answers every request it cannot serve, and tells
    the server when the client cancels a request (``on_cancel``: pygls cancels only the
    future of a direct handler, not the command a built-in handler runs for it)."""

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.initialized = False
        self.on_cancel: Callable[[Any], None] | None = None
        self._work_done_tokens: dict[Any, int | str] = {}

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            if "jsonrpc" in data and "method" in data:
                cause = e.__cause__ or e
                return Unreadable(data.get("id"), str(data["method"]), str(cause).splitlines()[0])
            raise

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        msg_id = getattr(message, "id", None)
        is_request = method is not None and msg_id is not None
        if is_request and self._shutdown and method != types.EXIT:
            self._refuse(
                msg_id,
                JsonRpcInvalidRequest(
                    f"{method} came after shutdown; the server only accepts exit now"
                ),
            )
            return
        if method == types.INITIALIZE and is_request and self.initialized:
            self._refuse(msg_id, JsonRpcInvalidRequest("initialize was already received"))
            return
        if method not in (types.INITIALIZE, *_BEFORE_INITIALIZE) and not self.initialized:
            if is_request:
                self._refuse(
                    msg_id,
                    JsonRpcServerNotInitialized(
                        f"{method} came before initialize; send initialize first"
                    ),
                )
            return
        if isinstance(message, Unreadable):
            if msg_id is None:
                logger.warning("dropped notification %s: %s", method, message.reason)
                return
            self._refuse(
                msg_id,
                JsonRpcInvalidParams(
                    f"the params of {method} do not fit the LSP schema: {message.reason}"
                ),
            )
            return
        if method == types.INITIALIZE and is_request:
            self.initialized = True
        if method == types.WORKSPACE_EXECUTE_COMMAND and is_request:
            token = getattr(message.params, "work_done_token", None)
            if token is not None:
                self._work_done_tokens[msg_id] = token
        super().handle_message(message)

    def work_done_token(self, msg_id: Any) -> int | str | None:
        """The ``workDoneToken`` of request ``msg_id`` (an executeCommand), if it sent one."""
        return self._work_done_tokens.get(msg_id)

    def _send_response(self, msg_id: Any, *args: Any, **kwargs: Any) -> None:
        self._work_done_tokens.pop(msg_id, None)  # answered: its token is done with
        super()._send_response(msg_id, *args, **kwargs)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        super()._handle_cancel_notification(msg_id)
        if self.on_cancel is not None:
            self.on_cancel(msg_id)

    def refuse_unparsable(self, error: Exception) -> None:
        """Answer a body that was not JSON at all (its id cannot be known)."""
        self._refuse(None, JsonRpcParseError(f"the message is not JSON: {error}"))

    def _refuse(self, msg_id: Any, error: JsonRpcException) -> None:
        logger.warning("refused %s: %s", msg_id, error)
        self._send_response(msg_id, error=error.to_response_error())


def is_parse_error(error: BaseException) -> bool:
    return isinstance(error, json.JSONDecodeError | UnicodeDecodeError)
