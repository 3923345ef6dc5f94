"""The bounded FIFO the one consumer serves: job ids, and engine operations (model loads and
unloads) that must wait their turn so they never race a generation."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from sdrest.errors import QueueFullError


class QueuedOperation:
    """An engine operation waiting in the queue; ``done`` resolves when it has run."""

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self._run = run
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        """Run it and resolve ``done`` with its outcome (for whoever still waits)."""
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self.done.done():
                self.done.set_exception(exc)
            return
        if not self.done.done():
            self.done.set_result(None)


class JobQueue:
    """FIFO of job ids (and operations) waiting for the engine. Full -> :class:`QueueFullError`
    (429); operations do not count against the bound."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[str | QueuedOperation] = deque()
        self._jobs = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return self._jobs

    def push(self, job_id: str, *, force: bool = False) -> None:
        """Append a job; ``force`` skips the bound (jobs recovered after a restart)."""
        if not force and self._jobs >= self.capacity:
            raise QueueFullError(f"job queue is full ({self.capacity} pending)")
        self._append(job_id)

    def push_operation(self, run: Callable[[], Awaitable[None]]) -> QueuedOperation:
        """Append an engine operation; await its ``done`` (then :meth:`discard` it)."""
        operation = QueuedOperation(run)
        self._append(operation)
        return operation

    def _append(self, item: str | QueuedOperation) -> None:
        self._items.append(item)
        self._jobs += isinstance(item, str)
        self._ready.set()

    def remove(self, item: str | QueuedOperation) -> bool:
        """Take a waiting job (cancel) or operation out; False when it is not waiting."""
        try:
            self._items.remove(item)
        except ValueError:
            return False
        self._jobs -= isinstance(item, str)
        return True

    def position(self, job_id: str) -> int:
        """1-based position in the queue (operations ahead count); 0 when not waiting."""
        try:
            return self._items.index(job_id) + 1
        except ValueError:
            return 0

    def push_front(self, job_id: str) -> None:
        """Put a job back at the head (a coalesced call was stopped for another job)."""
        self._items.appendleft(job_id)
        self._jobs += 1
        self._ready.set()

    def last_id(self) -> str | None:
        """The job id waiting last; None when nothing waits or an operation is last."""
        last = self._items[-1] if self._items else None
        return last if isinstance(last, str) else None

    def leading_ids(self) -> list[str]:
        """The job ids waiting before the first operation, next first."""
        leading: list[str] = []
        for item in self._items:
            if not isinstance(item, str):
                break
            leading.append(item)
        return leading

    def ids(self) -> list[str]:
        """Waiting job ids, next first."""
        return [item for item in self._items if isinstance(item, str)]

    async def pop(self, timeout: float | None = None) -> str | QueuedOperation | None:
        """Wait for and take the next item; None when ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._items:
            self._ready.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                return None
        item = self._items.popleft()
        self._jobs -= isinstance(item, str)
        return item
