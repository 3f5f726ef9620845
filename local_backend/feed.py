"""A feed from an engine's worker thread to the asyncio consumer of ``Engine.stream``.

Both engines decode off the event loop (llama.cpp in an executor thread, the torch engine in its
scheduler thread) and hand each text piece, then the final result or an exception, to the
stream's consumer:

    feed = Feed(end=Generated)
    start_worker(feed.emit, feed.stop)      # the worker calls emit(item), checks stop
    async for item in feed.items(): ...     # raises what the worker emitted as an exception

``stop`` is set when the loop is gone (nobody listens any more); the consumer sets it too when it
stops iterating, so the worker drops the generation at its next token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any


class Feed:
    def __init__(self, *, end: type) -> None:
        self._end = end  # the type of the last item (Generated)
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.stop = threading.Event()

    def emit(self, item: Any) -> None:
        """Hand ``item`` to the consumer; thread-safe."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            self.stop.set()

    async def items(self) -> AsyncIterator[Any]:
        """The items as they come, up to and including the ``end`` one."""
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, self._end):
                return
