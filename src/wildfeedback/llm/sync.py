"""Run the async LLM layer from plain synchronous code.

Stages are ordinary functions (they run inside Ray's `map_batches` too), so they
need a blocking way in. `asyncio.run` per call would build a fresh event loop
each time, and an HTTP client's pooled connections belong to the loop that made
them; it also fails inside an already running loop (a notebook). So all sync
calls share one long-lived loop on a daemon thread, and connections are reused.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="wildfeedback-llm-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the shared background loop and wait for its result."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # would wait on itself forever
        coroutine.close()
        raise RuntimeError("run_sync called from the LLM background loop itself; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
