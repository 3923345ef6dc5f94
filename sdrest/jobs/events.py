"""An in-process event bus: job updates fan out to pollers, streams and /ws.

Subscribers get a bounded queue each; a slow subscriber loses its oldest events instead of
slowing the job system down (a progress stream only needs the latest state). Listeners (metrics)
are called synchronously instead and see every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import msgspec

from sdrest.schemas import Job

logger = logging.getLogger(__name__)


class JobEvent(msgspec.Struct, frozen=True):
    """A job changed: ``type`` is ``state`` (status change), ``progress`` (a step) or
    ``deleted`` (a finished job was deleted; ``job`` is its last state)."""

    type: str
    job: Job
    relayed: bool = False
    """It happened on another node (``--database-url``) and reached this one through the
    relay: views show it, but this node's ``/metrics`` leaves it to the node where it happened,
    so the nodes' counts add up to the cluster's."""


class EventBus:
    """Fan-out of :class:`JobEvent` to any number of subscribers; used on the loop thread."""

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[JobEvent]] = set()
        self._listeners: list[Callable[[JobEvent], None]] = []

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are listening."""
        return len(self._subscribers)

    def publish(self, event: JobEvent) -> None:
        """Deliver to every subscriber without waiting.

        Subscribers get a snapshot: the job object itself keeps changing (queued -> generating
        -> completed) before a subscriber reads its queue, and each event must show the state it
        announces. A shallow copy is enough: every field is replaced, never mutated in place.
        """
        if not self._subscribers and not self._listeners:
            return
        event = msgspec.structs.replace(event, job=msgspec.structs.replace(event.job))
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # an observer must never break the job system
                logger.exception("an event listener failed")
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def listen(self, listener: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every event, synchronously on the loop thread, as it is
        published (no task, no queue: nothing is dropped, so it must be quick). Returns the
        function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return stop

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        """``async with bus.subscribe() as events: await events.get()``."""
        queue: asyncio.Queue[JobEvent] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
