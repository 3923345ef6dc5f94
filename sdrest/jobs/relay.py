"""Events between nodes over PostgreSQL: LISTEN/NOTIFY carries a wake-up, a table the payload.

A NOTIFY payload is limited to 8000 bytes, and a job's state (its prompt alone may be 16 KiB)
does not fit. So an event is a row of ``job_events`` (any size), and the notification says only
"there are new rows" (empty payload). Each node reads the rows after the last one it saw, in
order: a burst of events costs one read, and after a lost connection the node catches up from
the table instead of losing what was sent meanwhile. Rows older than :data:`KEEP_EVENTS` seconds
are deleted.

Two more channels carry no payload beyond a job id: ``sdrest_stop`` (a stop was recorded for a
job: its worker reads it now rather than at its next lease renewal) and ``sdrest_wake`` (a job
was queued: idle workers claim now rather than at their next poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg

from sdrest.errors import RetryLaterError
from sdrest.jobs.events import JobEvent
from sdrest.jobs.store import PreviewEvent
from sdrest.jobs.store_pg import PgJobStore

if TYPE_CHECKING:
    from sdrest.jobs.cluster import RelayHandlers

logger = logging.getLogger(__name__)

KEEP_EVENTS = 300.0
"""Seconds an event row is kept (a node that was away longer resyncs from the jobs table)."""
_OUTBOX = 4096
"""Events waiting to be written at most; past it progress events are dropped (states never)."""
_RECONNECT = 1.0
_POLL = 1.0
"""Seconds between reads of the table even without a notification (a missed one)."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(JobEvent)


_preview_decoder = msgspec.json.Decoder(PreviewEvent)


def _light(event: JobEvent) -> JobEvent:
    """The event without input images (a state event of a queued job still has them)."""
    job = event.job
    if job.request is not None and job.request.has_images:
        job = msgspec.structs.replace(job, request=job.request.without_images())
    if job.upscale is not None and job.upscale.image:
        job = msgspec.structs.replace(job, upscale=msgspec.structs.replace(job.upscale, image=""))
    return JobEvent(event.type, job)


class PgRelay:
    """One node's end of the relay (see the module's docstring)."""

    def __init__(self, store: PgJobStore, node: str) -> None:
        self.store = store
        self.node = node
        self._outbox: asyncio.Queue[JobEvent | PreviewEvent] | None = None
        self._last_id = -1

    def send(self, event: JobEvent) -> None:
        """Queue ``event`` for every other node (written in order by :meth:`run`)."""
        if self._outbox is None:
            return  # not running (yet): the other nodes resync from the jobs table
        if self._outbox.full():
            if event.type == "progress":
                return
            with contextlib.suppress(asyncio.QueueEmpty):
                self._outbox.get_nowait()
        self._outbox.put_nowait(_light(event))

    def send_preview(self, job_id: str, step: int, png: bytes) -> None:
        """Queue a job's latest preview for every other node (dropped when the outbox is
        full: the next one replaces it anyway)."""
        if self._outbox is not None and not self._outbox.full():
            self._outbox.put_nowait(PreviewEvent(job_id, step, png))

    async def _notify(self, channel: str, payload: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    async def stop(self, job_id: str) -> None:
        """Tell every node that a stop was recorded for ``job_id``."""
        await self._notify("sdrest_stop", job_id)

    async def wake(self) -> None:
        """Tell every node's idle workers that a job was queued."""
        await self._notify("sdrest_wake", "")

    async def run(self, handlers: RelayHandlers) -> None:
        """Send and receive until cancelled, reconnecting by itself."""
        self._outbox = asyncio.Queue(_OUTBOX)
        sender = asyncio.create_task(self._send_forever(), name="sdrest-relay-send")
        try:
            while True:
                try:
                    await self._listen(handlers)
                except (psycopg.OperationalError, RetryLaterError) as exc:
                    logger.warning("event relay disconnected (%s): reconnecting", exc)
                await asyncio.sleep(_RECONNECT)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send_forever(self) -> None:
        assert self._outbox is not None
        last_prune = 0.0
        while True:
            event = await self._outbox.get()
            while True:
                try:
                    await self._write(event)
                    break
                except RetryLaterError:
                    await asyncio.sleep(_RECONNECT)  # the database is away: keep the order
            if time.monotonic() - last_prune > KEEP_EVENTS / 10:
                last_prune = time.monotonic()
                with contextlib.suppress(RetryLaterError):
                    async with self.store.connection() as conn:
                        cutoff = time.time() - KEEP_EVENTS
                        await conn.execute("DELETE FROM job_events WHERE created < %s", (cutoff,))

    async def _write(self, event: JobEvent | PreviewEvent) -> None:
        if isinstance(event, PreviewEvent):
            kind, job_id = "preview", event.job_id
        else:
            kind, job_id = event.type, event.job.id
        async with self.store.connection() as conn:
            await conn.execute(
                "WITH e AS (INSERT INTO job_events (node, type, job_id, body, created)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id)"
                " SELECT pg_notify('sdrest_events', '') FROM e",
                (self.node, kind, job_id, _encoder.encode(event), time.time()),
            )

    async def _listen(self, handlers: RelayHandlers) -> None:
        async with await psycopg.AsyncConnection.connect(self.store.url, autocommit=True) as conn:
            for channel in ("sdrest_events", "sdrest_stop", "sdrest_wake"):
                await conn.execute(f"LISTEN {channel}")
            if self._last_id < 0:  # first connection: only what happens from now on
                cursor = await conn.execute("SELECT COALESCE(MAX(id), 0) FROM job_events")
                row = await cursor.fetchone()
                self._last_id = int(row[0]) if row else 0
            await self._read(conn, handlers)
            handlers.on_wake()  # a job may have been queued while this node was disconnected
            while True:
                # One notification (or a quiet second: one may have been lost), then a read.
                async for note in conn.notifies(timeout=_POLL, stop_after=1):
                    if note.channel == "sdrest_stop":
                        handlers.on_stop(note.payload)
                    elif note.channel == "sdrest_wake":
                        handlers.on_wake()
                await self._read(conn, handlers)

    async def _read(
        self,
        conn: psycopg.AsyncConnection[Any],
        handlers: RelayHandlers,
    ) -> None:
        cursor = await conn.execute(
            "SELECT id, node, type, body FROM job_events WHERE id > %s ORDER BY id",
            (self._last_id,),
        )
        for event_id, node, kind, body in await cursor.fetchall():
            self._last_id = max(self._last_id, int(str(event_id)))
            if node == self.node:
                continue
            if kind == "preview":
                handlers.on_preview(_preview_decoder.decode(bytes(body)))
            else:
                handlers.on_event(_decoder.decode(bytes(body)))
