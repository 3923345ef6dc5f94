"""A bounded FIFO of queued job ids with positions, removal and an awaitable pop."""

from __future__ import annotations

import asyncio
from collections import deque

from sdrest.errors import QueueFullError


class JobQueue:
    """FIFO of job ids waiting for the engine. Full -> :class:`QueueFullError` (429)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: deque[str] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ids)

    def push(self, job_id: str, *, force: bool = False) -> None:
        """Append a job; ``force`` skips the bound (jobs recovered after a restart)."""
        if not force and len(self._ids) >= self.capacity:
            raise QueueFullError(f"job queue is full ({self.capacity} pending)")
        self._ids.append(job_id)
        self._ready.set()

    def remove(self, job_id: str) -> bool:
        """Take a queued job out (cancel); False when it is not waiting."""
        try:
            self._ids.remove(job_id)
        except ValueError:
            return False
        return True

    def position(self, job_id: str) -> int:
        """1-based position in the queue; 0 when the job is not waiting."""
        try:
            return self._ids.index(job_id) + 1
        except ValueError:
            return 0

    def ids(self) -> list[str]:
        """Waiting job ids, next first."""
        return list(self._ids)

    async def pop(self, timeout: float | None = None) -> str | None:
        """Wait for and take the next job id; None when ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._ids:
            self._ready.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                return None
        return self._ids.popleft()
