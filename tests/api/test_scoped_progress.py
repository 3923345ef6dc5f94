"""Nothing about one user's jobs leaks to another: A1111 ``/progress`` and ``/interrupt`` are
scoped to the caller's own jobs (jwt mode, two users and an admin), and the absolute URLs ``/v1``
gives out come from ``--public-url`` (else the bound address), never from the ``Host`` header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdrest.app import create_app
from sdrest.errors import InvalidRequestError
from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from tests.api.support import bearer, token_for
from tests.conftest import settings_in
from tests.fakes import FakeEngine

TIMEOUT = 5.0


@asynccontextmanager
async def serve(
    settings: Settings, engine: FakeEngine
) -> AsyncIterator[tuple[SdrestService, httpx.AsyncClient]]:
    """The real app (all families, the real auth middleware) over a fake-engine service."""
    async with SdrestService(settings, engine=engine) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield service, client


async def _submit(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 4}}
    resp = await client.post("/sdcpp/v1/img_gen", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


async def _progress(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    resp = await client.get("/sdapi/v1/progress", headers=headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def _status(service: SdrestService, job_id: str) -> str:
    return (await service.get(job_id)).status


async def test_progress_and_interrupt_see_only_the_callers_jobs(jwt_settings: Settings) -> None:
    engine = FakeEngine()
    alice, bob, root = (bearer(token_for(jwt_settings, n)) for n in ("alice", "bob", "root"))
    async with serve(jwt_settings, engine) as (service, client):
        idle = await _progress(client, bob)
        idle_interrupt = await client.post("/sdapi/v1/interrupt", headers=bob)
        assert idle["state"]["job"] == "" and idle["state"]["job_count"] == 0
        assert idle_interrupt.status_code == 200 and idle_interrupt.json() == {}

        engine.hold = asyncio.Event()
        running = await _submit(client, alice)
        await asyncio.wait_for(engine.holding.wait(), TIMEOUT)

        # Bob has no job: exactly the idle answer, though alice's job runs.
        assert await _progress(client, bob) == idle
        # Bob's interrupt answers as on an idle server and stops nothing of alice's.
        stopped = await client.post("/sdapi/v1/interrupt", headers=bob)
        assert (stopped.status_code, stopped.json()) == (idle_interrupt.status_code, {})
        assert (await client.post("/sdapi/v1/skip", headers=bob)).json() == {}
        assert not service.stop_requested(running)
        assert await _status(service, running) == "generating"

        # Alice sees her running job; the admin sees it too, with the queue behind it.
        mine = await _progress(client, alice)
        assert mine["state"]["job"] == running and mine["state"]["sampling_step"] == 4
        assert mine["current_image"] is not None

        # Bob's own queued job: his progress shows it (not running yet), nothing of alice's.
        queued = await _submit(client, bob)
        his = await _progress(client, bob)
        assert his["state"]["job"] == queued and his["state"]["job_count"] == 1
        assert his["progress"] == 0 and his["state"]["sampling_step"] == 0
        assert his["current_image"] is None and his["textinfo"] == "Queued"
        admin = await _progress(client, root)
        assert admin["state"]["job"] == running and admin["state"]["job_count"] == 2
        assert (await _progress(client, alice))["state"]["job_count"] == 1  # bob's not counted

        # Bob's interrupt stops his own job only.
        assert (await client.post("/sdapi/v1/interrupt", headers=bob)).json() == {}
        assert await _status(service, queued) == "cancelled"
        assert await _status(service, running) == "generating"
        assert await _progress(client, bob) == idle

        # Alice's interrupt stops hers.
        assert (await client.post("/sdapi/v1/interrupt", headers=alice)).json() == {}
        done = await service.wait(running, timeout=TIMEOUT)
        assert done.status == "cancelled" and done.error is not None
        assert done.error.code == "interrupted"


async def test_admin_interrupt_stops_the_current_job(jwt_settings: Settings) -> None:
    engine = FakeEngine()
    alice, root = (bearer(token_for(jwt_settings, n)) for n in ("alice", "root"))
    async with serve(jwt_settings, engine) as (service, client):
        engine.hold = asyncio.Event()
        running = await _submit(client, alice)
        await asyncio.wait_for(engine.holding.wait(), TIMEOUT)
        assert (await client.post("/sdapi/v1/interrupt", headers=root)).json() == {}
        done = await service.wait(running, timeout=TIMEOUT)
        assert done.status == "cancelled"


# -- absolute URLs -----------------------------------------------------------------------------

GEN = "/v1/images/generations"
FORGED = {"Host": "evil.example"}


async def _url_answer(settings: Settings) -> str:
    async with serve(settings, FakeEngine()) as (_, client):
        body = {"prompt": "x", "response_format": "url", "size": "64x64"}
        resp = await client.post(GEN, json=body, headers=FORGED)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["data"][0]["url"])


async def test_v1_urls_ignore_a_forged_host_header(tmp_path: Path, models_dir: Path) -> None:
    url = await _url_answer(settings_in(tmp_path, models_dir, port=9123))
    assert url.startswith("http://127.0.0.1:9123/api/queue/job/"), url
    assert "evil" not in url


async def test_v1_urls_use_the_public_url(tmp_path: Path, models_dir: Path) -> None:
    settings = settings_in(tmp_path, models_dir, public_url="https://sd.example.com/gen/")
    url = await _url_answer(settings)
    assert url.startswith("https://sd.example.com/gen/api/queue/job/"), url


def test_public_base_url() -> None:
    assert load_settings({}, env={}).public_base_url == "http://127.0.0.1:8080"
    assert load_settings({"host": "::1", "port": 81}, env={}).public_base_url == "http://[::1]:81"
    assert (
        load_settings({}, env={"SDREST_PUBLIC_URL": "http://a.example:8000/"}).public_base_url
        == "http://a.example:8000"
    )


@pytest.mark.parametrize(
    "bad", ["sd.example.com", "ftp://sd.example.com", "https://", "https://u:p@h/", "http://h/?q"]
)
def test_public_url_must_be_an_http_base(bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="public_url"):
        load_settings({"public_url": bad}, env={})
