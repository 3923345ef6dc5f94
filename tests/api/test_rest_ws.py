"""/ws over the ASGI interface on the test's own loop (the service and the socket share it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Message

from sdrest.api.rest import ws as ws_module
from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import load_settings
from tests.api.support import ADMIN, ALICE, TestUsers, text2img
from tests.fakes import FakeEngine

Sender = Callable[[Message], Awaitable[None]]


class WSClient:
    """A minimal ASGI WebSocket client."""

    def __init__(
        self, app: ASGIApp, headers: dict[str, str] | None = None, query: str = ""
    ) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": "/ws",
            "raw_path": b"/ws",
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "server": ("test", 80),
            "client": ("127.0.0.1", 5000),
            "subprotocols": [],
        }
        self.send: Sender = self.inbox.put
        self.task: asyncio.Task[None] | None = None

    async def _serve(self) -> None:
        await self.app(self.scope, self.outbox.get, self._send)

    async def connect(self) -> Message:
        self.task = asyncio.create_task(self._serve())
        await self.outbox.put({"type": "websocket.connect"})
        return await asyncio.wait_for(self.inbox.get(), 5)

    async def _send(self, message: Message) -> None:
        await self.send(message)

    async def receive(self, timeout: float = 5) -> Message:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def json(self, timeout: float = 5) -> dict[str, Any]:
        message = await self.receive(timeout)
        assert message["type"] == "websocket.send", message
        return dict(json.loads(message["text"]))

    async def until(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        while True:
            message = await self.json(timeout)
            if message["type"] == kind:
                return message

    async def say(self, text: str) -> None:
        await self.outbox.put({"type": "websocket.receive", "text": text})

    async def disconnect(self) -> None:
        await self.outbox.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)


async def _open(service: SdrestService, headers: dict[str, str] | None = None) -> WSClient:
    client = WSClient(TestUsers(create_app(service)), headers)
    assert (await client.connect())["type"] == "websocket.accept"
    hello = await client.json()
    assert hello["type"] == "connected"
    return client


async def test_greeting_reports_queue_and_system(service: SdrestService) -> None:
    client = await _open(service)
    queue = await client.json()
    assert queue["type"] == "queue_update" and queue["data"]["queue_size"] == 0
    system = await client.json()
    assert system["type"] == "system_update"
    assert system["data"] == {"loaded_model": None, "model_loaded": False, "available_models": 1}
    assert isinstance(system["timestamp"], int) and system["timestamp"] > 1_600_000_000_000
    await client.say('{"type": "ping"}')
    assert (await client.until("pong"))["data"] == {}
    await client.disconnect()
    assert service.events.subscriber_count == 0


async def test_job_updates_in_order_until_completed(
    service: SdrestService, fake_engine: FakeEngine
) -> None:
    client = await _open(service)
    job = await service.submit(text2img_request(steps=3))
    updates, loaded = [], []
    while True:
        message = await client.json()
        if message["type"] == "system_update":
            loaded.append(message["data"]["loaded_model"])
        if message["type"] != "job_update":
            continue
        updates.append(message["data"])
        if message["data"]["status"] in ("completed", "failed", "cancelled"):
            break
    # The first update may already say processing: the consumer can take the job before the
    # service publishes its queued state (service._enqueue awaits the store first).
    assert updates[0]["status"] in ("queued", "processing") and updates[0]["job_id"] == job.id
    statuses = [u["status"] for u in updates]
    assert statuses == sorted(statuses, key=["queued", "processing", "completed"].index)
    steps = [u["current_step"] for u in updates if u["status"] == "processing"]
    assert steps == sorted(steps) and steps[-1] == 3
    last = updates[-1]
    assert last["status"] == "completed" and last["progress"] == 1.0
    assert last["total_steps"] == 3 and last["time_remaining"] == 0
    assert last["outputs"] == [f"/api/queue/job/{job.id}/output/image_0.png"]
    assert {"time_elapsed", "time_remaining", "progress", "current_step"} <= set(last)
    assert loaded[-1] == "tiny"  # the model the job loaded is announced
    await client.disconnect()


def text2img_request(**fields: Any) -> Any:
    import msgspec

    from sdrest.api.rest.schemas import GenerateBody
    from sdrest.api.rest.translate import to_request

    body = msgspec.convert(text2img(**fields), GenerateBody)
    return to_request(body, "text2img", None, {})


async def test_a_user_sees_only_their_own_jobs(
    service: SdrestService, fake_engine: FakeEngine
) -> None:
    alice, admin = await _open(service, ALICE), await _open(service, ADMIN)
    bobs = await service.submit(text2img_request(), owner="bob")
    await service.wait(bobs.id, 5)
    alices = await service.submit(text2img_request(), owner="alice")
    await service.wait(alices.id, 5)
    seen = set()
    while True:
        data = (await alice.until("job_update"))["data"]
        seen.add(data["job_id"])
        if data["job_id"] == alices.id and data["status"] == "completed":
            break
    assert seen == {alices.id}
    admin_seen: set[str] = set()
    while admin_seen != {bobs.id, alices.id}:
        admin_seen.add((await admin.until("job_update"))["data"]["job_id"])
    await alice.disconnect()
    await admin.disconnect()


async def test_auth_on_without_credentials_closes_4401(tmp_path: Path, models_dir: Path) -> None:
    settings = load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data"),
            "auth_mode": "jwt",
            "jwt_secret": "x" * 40,
        },
        env={},
    )
    async with SdrestService(settings, engine=FakeEngine()) as service:
        client = WSClient(create_app(service))
        first = await client.connect()
        if first["type"] == "websocket.accept":
            first = await client.receive()
        assert first["type"] == "websocket.close" and first["code"] == 4401
        assert service.events.subscriber_count == 0


async def test_a_client_that_does_not_read_is_dropped_without_slowing_jobs(
    service: SdrestService, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "SEND_TIMEOUT", 0.2)
    monkeypatch.setattr(ws_module, "TICK", 0.05)
    client = await _open(service)
    stuck = asyncio.Event()

    async def never(message: Message) -> None:
        await stuck.wait()  # the client's socket buffer is full: sends never complete

    client.send = never
    started = asyncio.get_running_loop().time()
    for _ in range(3):
        job = await service.submit(text2img_request(steps=5))
        assert (await service.wait(job.id, 5)).status == "completed"
    assert asyncio.get_running_loop().time() - started < 2
    assert client.task is not None
    await asyncio.wait_for(client.task, 5)  # the endpoint gave up on the client
    assert service.events.subscriber_count == 0
    stuck.set()


async def test_system_update_on_model_changes(
    service: SdrestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import write_fake_checkpoint

    monkeypatch.setattr(ws_module, "TICK", 0.02)
    client = await _open(service)
    assert (await client.until("system_update"))["data"]["available_models"] == 1
    write_fake_checkpoint(service.registry.models_dir / "checkpoints" / "second.safetensors")
    await service.models.refresh()
    assert (await client.until("system_update"))["data"]["available_models"] == 2
    await service.models.load("second")
    data = (await client.until("system_update"))["data"]
    assert data["loaded_model"] == "second" and data["model_loaded"] is True
    await client.disconnect()
