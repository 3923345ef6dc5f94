"""The ``/ws`` WebSocket: ``job_update``, ``queue_update`` and ``system_update`` messages.

Every message is ``{"type", "data", "timestamp"}`` (timestamp in Unix milliseconds). On connect
the client gets a ``connected`` message, then the state of every live job it may see (so a page
that reloads re-attaches to a running queue), a ``queue_update`` and a ``system_update``. After
that: a ``job_update`` on every progress step and state change, a ``queue_update`` whenever a job
enters or leaves the queue, a ``system_update`` when the loaded model or the model count changes,
a ``job_deleted`` (``{"job_id"}``) when a finished job is deleted.
A client sees only its own jobs unless it is an admin (or auth is off).

A slow client never slows the job system: the event bus gives each connection a bounded queue
that drops the oldest events, and a send that takes longer than ``SEND_TIMEOUT`` closes the
connection (1008). ``{"type": "ping"}`` from the client is answered with ``pong``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from sdrest.api.common import service_of
from sdrest.api.json_limits import decode_client_json
from sdrest.api.rest.responses import (
    WsConnected,
    WsData,
    WsEmpty,
    WsJobDeleted,
    WsQueueUpdate,
    WsSystemUpdate,
)
from sdrest.api.rest.views import ws_job_update, ws_message, ws_queue_update
from sdrest.auth import Principal, principal_of
from sdrest.errors import InvalidRequestError
from sdrest.jobs import JobEvent
from sdrest.schemas import Job, QueueSnapshot
from sdrest.service import SdrestService
from sdrest.tasks import cancel_all

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0
"""Seconds one send may take before the client is considered stuck and disconnected."""
TICK = 1.0
"""Seconds between checks for a stuck client and for system changes."""
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 1008
_MAX_CLIENT_MESSAGE = 4096
_encoder = msgspec.json.Encoder()
_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


class _Connection:
    """One client: its principal, the send lock and the last system state it was told."""

    def __init__(self, websocket: WebSocket, service: SdrestService, principal: Principal) -> None:
        self.websocket = websocket
        self.service = service
        self.principal = principal
        self.lock = asyncio.Lock()
        self.system: tuple[str | None, int] | None = None
        self.sending_since: float | None = None
        """Loop time the send in progress began (the watchdog's clock; no timer per message)."""

    async def send(self, kind: str, data: WsData) -> None:
        text = _encoder.encode(ws_message(kind, data)).decode()
        async with self.lock:
            self.sending_since = asyncio.get_running_loop().time()
            try:
                await self.websocket.send_text(text)
            finally:
                self.sending_since = None

    def stuck(self) -> bool:
        """Whether a send has been waiting longer than ``SEND_TIMEOUT``."""
        since = self.sending_since
        return since is not None and asyncio.get_running_loop().time() - since > SEND_TIMEOUT

    def visible(self, job: Job) -> bool:
        return self.principal.may_see(job.owner)

    def queue_data(self, snapshot: QueueSnapshot | None = None) -> WsQueueUpdate:
        return ws_queue_update(snapshot or self.service.queue_snapshot(), self.principal)

    def system_message(self) -> WsSystemUpdate | None:
        """``system_update`` data when the loaded model or the model count changed, else None."""
        models = self.service.models
        state = (models.last_loaded, len(models.generation_models()))
        if state == self.system:
            return None
        self.system = state
        return WsSystemUpdate(state[0], state[0] is not None, state[1])

    async def system_changed(self) -> None:
        data = self.system_message()
        if data is not None:
            await self.send("system_update", data)

    async def on_event(self, event: JobEvent) -> None:
        if event.type == "deleted":
            if self.visible(event.job):
                await self.send("job_deleted", WsJobDeleted(event.job.id))
            return
        if not self.visible(event.job):
            if event.type == "state":
                await self.send("queue_update", self.queue_data())
            return
        await self.send("job_update", ws_job_update(event.job))
        if event.type == "state":
            await self.send("queue_update", self.queue_data())
            await self.system_changed()

    def greeting(self) -> list[tuple[str, WsData]]:
        """What a new client is told first, read without awaiting anything: taken in the same
        step as the event subscription, so every event that follows is newer than this."""
        principal = self.principal
        messages: list[tuple[str, WsData]] = [
            ("connected", WsConnected(principal.username, principal.role))
        ]
        snapshot = self.service.queue_snapshot()
        jobs = [job for job in snapshot.jobs if self.visible(job)]
        messages += [("job_update", ws_job_update(job)) for job in jobs]
        messages.append(("queue_update", self.queue_data(snapshot)))
        system = self.system_message()
        if system is not None:
            messages.append(("system_update", system))
        return messages


async def _receive(conn: _Connection) -> None:
    """Read client messages until it disconnects; answer pings."""
    while True:
        message = await conn.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text") or ""
        if len(text) > _MAX_CLIENT_MESSAGE:
            continue
        try:
            kind = decode_client_json(text, _ANY).get("type") if text.startswith("{") else text
        except (msgspec.DecodeError, AttributeError, InvalidRequestError):
            kind = None  # not a message this server knows (nested too deeply included)
        if kind == "ping":
            await conn.send("pong", WsEmpty())


async def _pump(
    conn: _Connection,
    events: asyncio.Queue[JobEvent],
    greeting: list[tuple[str, WsData]],
) -> None:
    """Send the greeting, then forward events until cancelled."""
    for kind, data in greeting:
        await conn.send(kind, data)
    while True:
        await conn.on_event(await events.get())


async def _watch(conn: _Connection) -> None:
    """Every ``TICK``: give up on a client stuck in a send (TimeoutError ends the connection),
    else tell it about system changes (when no send is in progress)."""
    while True:
        await asyncio.sleep(TICK)
        if conn.stuck():
            raise TimeoutError("client does not read")
        if not conn.lock.locked():
            await conn.system_changed()


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one WebSocket client (close 4401 when auth is on and the caller is not signed in)."""
    service = service_of(websocket)
    principal = principal_of(websocket)
    await websocket.accept()
    # Anyone identified: a user, an admin, a guest of an ``optional`` server, or everybody with
    # auth off (the open-server principal); never a refused or missing credential.
    if not principal.identified:
        await websocket.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
        return
    conn = _Connection(websocket, service, principal)
    async with service.events.subscribe() as events:
        greeting = conn.greeting()  # no await since subscribing: nothing can happen in between
        receiver = asyncio.create_task(_receive(conn), name="sdrest-ws-receive")
        pump = asyncio.create_task(_pump(conn, events, greeting), name="sdrest-ws-send")
        watchdog = asyncio.create_task(_watch(conn), name="sdrest-ws-watch")
        tasks = (receiver, pump, watchdog)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_all(tasks)
    failure = next((t.exception() for t in done if not t.cancelled() and t.exception()), None)
    if isinstance(failure, TimeoutError):
        logger.info("closing a /ws client that does not read (send took over %ss)", SEND_TIMEOUT)
        with contextlib.suppress(Exception):  # the close frame may not get through either
            await asyncio.wait_for(
                websocket.close(code=CLOSE_TOO_SLOW, reason="client too slow"), SEND_TIMEOUT
            )
    elif failure is not None and not isinstance(failure, WebSocketDisconnect | RuntimeError):
        logger.warning("/ws connection ended with %r", failure)
