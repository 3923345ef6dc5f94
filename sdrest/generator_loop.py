"""A private event loop in a background thread: what lets the synchronous
:class:`~sdrest.Generator` run the (asynchronous) service from any code.

The caller's thread never runs an event loop, so the sync methods behave the same in a plain
script, in a thread, and inside a running loop (a Jupyter cell, an async web handler): nothing
calls ``asyncio.run`` on the caller's loop. While it waits, the caller's thread runs the progress
callback (so the callback may touch notebook widgets, raise, or cancel), and an interrupt there
(Ctrl-C, Jupyter's stop button) cancels the coroutine on the loop and waits for it to clean up.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
Relay = Callable[[int, int, str], None]
"""Progress as the loop reports it: (step, steps, phase)."""

_POLL = 0.05
"""Seconds between looks at the call while no progress arrives (keeps interrupts prompt)."""
STOP_TIMEOUT = 30.0
"""Seconds an interrupted call may take to stop its job before the interrupt is raised."""


class _Running:
    """One call on the loop: its task (once started), whether a cancel came first, its end."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.cancel_asked = False
        self.ended = threading.Event()

    def cancel(self) -> None:
        """On the loop thread: cancel the task, or make it end at once when it starts."""
        self.cancel_asked = True
        if self.task is not None:
            self.task.cancel()


async def _tracked(coro: Coroutine[Any, Any, T], running: _Running) -> T:
    running.task = asyncio.current_task()
    try:
        if running.cancel_asked:
            coro.close()
            raise asyncio.CancelledError
        return await coro
    finally:
        running.ended.set()


class LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`close`."""

    def __init__(self, name: str = "sdrest-generator") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the loop still runs."""
        return self._thread.is_alive()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            leftover = asyncio.all_tasks(self._loop)
            for task in leftover:
                task.cancel()
            if leftover:
                gather = asyncio.gather(*leftover, return_exceptions=True)
                self._loop.run_until_complete(gather)
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    def run(
        self,
        factory: Callable[[Relay | None], Coroutine[Any, Any, T]],
        progress: Callable[[int, int, str], object] | None = None,
    ) -> T:
        """Run ``factory(relay)`` on the loop and return its result, blocking this thread.

        ``relay`` (None without ``progress``) may be called on the loop; each call reaches
        ``progress`` on this thread. Any exception here (an interrupt, one ``progress`` raised)
        cancels the coroutine, waits up to :data:`STOP_TIMEOUT` for it to end, and is re-raised.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("a Generator method was called on its own loop: use AsyncGenerator")
        if not self.alive:
            raise RuntimeError("the generator is closed")
        items: queue.SimpleQueue[tuple[int, int, str]] = queue.SimpleQueue()
        relay: Relay | None = None
        if progress is not None:

            def relay(step: int, steps: int, phase: str) -> None:
                items.put((step, steps, phase))

        running = _Running()
        future = asyncio.run_coroutine_threadsafe(_tracked(factory(relay), running), self._loop)
        try:
            while not future.done() or not items.empty():
                try:
                    item = items.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if progress is not None:
                    progress(*item)
            return future.result()
        except BaseException:
            if not future.done():
                self._loop.call_soon_threadsafe(running.cancel)
                running.ended.wait(STOP_TIMEOUT)
            raise

    def close(self, timeout: float = 60.0) -> None:
        """Stop the loop (its remaining tasks are cancelled) and join the thread."""
        if not self.alive:
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
