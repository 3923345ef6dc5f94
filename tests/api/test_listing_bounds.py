"""Listings stay small whatever the prompts: ``/api/queue/status`` carries the prompts shortened
(the job's own document has them whole), ``/ws`` messages carry none, and the finished jobs kept
in memory are bounded by bytes as well as by count."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import msgspec
import pytest

from sdrest.api.rest.views import ELLIPSIS, LISTED_PROMPT_CHARS, shorten
from sdrest.jobs.recent import job_size
from sdrest.schemas import ImgGenRequest, new_job
from sdrest.service import SdrestService
from tests.api.support import ADMIN
from tests.api.test_rest_ws import _open
from tests.fakes import FakeEngine

BIG = 16_000
"""Characters of a big prompt: the largest the native library takes (planning's 16 KiB ceiling),
with the server's --max-prompt-chars raised to allow it."""
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def big_prompts_allowed(service: SdrestService) -> None:
    limits = msgspec.structs.replace(service.settings.limits, max_prompt_chars=BIG)
    service.settings = msgspec.structs.replace(service.settings, limits=limits)


async def _submit(client: httpx.AsyncClient, prompt: str, negative: str = "") -> str:
    body = {"prompt": prompt, "negative_prompt": negative, "width": 64, "height": 64}
    resp = await client.post("/sdcpp/v1/img_gen", json=body)
    assert resp.status_code == 202, resp.text[:300]
    return str(resp.json()["id"])


def _big(letter: str) -> str:
    return letter * BIG


async def test_status_and_memory_stay_small_with_the_largest_prompts(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    runner = service.runner
    # Each job holds about 4 x 16 kB: its two prompts, and the infotext that repeats them.
    runner.recent_bytes_limit = 150_000  # room for two of the three jobs
    ids = []
    for letter in "abc":
        job_id = await _submit(client, _big(letter), negative=_big(letter.upper()))
        ids.append(job_id)
        await service.wait(job_id, timeout=TIMEOUT)

    status = await client.get("/api/queue/status")
    assert status.status_code == 200
    assert len(status.content) < 16 * 1024, len(status.content)
    jobs = {job["id"]: job for job in status.json()["queue"]["jobs"]}
    assert set(jobs) == set(ids)
    for letter, job_id in zip("abc", ids, strict=True):
        listed = jobs[job_id]
        assert len(listed["prompt"]) == LISTED_PROMPT_CHARS
        assert listed["prompt"] == letter * (LISTED_PROMPT_CHARS - 1) + ELLIPSIS
        assert listed["prompt_truncated"] is True and listed["negative_prompt_truncated"] is True
        assert listed["negative_prompt"].startswith(letter.upper() * 10)

    # The job's own documents carry the whole request (even the one memory no longer holds).
    for letter, job_id in zip("abc", ids, strict=True):
        own = (await client.get(f"/api/queue/job/{job_id}")).json()["job"]
        assert own["prompt"] == _big(letter) and own["prompt_truncated"] is False
        assert own["negative_prompt"] == _big(letter.upper())
        sdcpp = (await client.get(f"/sdcpp/v1/jobs/{job_id}")).json()
        assert sdcpp["status"] == "completed"

    count, size = runner.recent_usage
    assert size <= runner.recent_bytes_limit and count == 2
    assert runner.live(ids[0]) is None  # the oldest went first
    assert runner.live(ids[2]) is not None


async def test_recent_jobs_bounded_by_count_too(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    runner = service.runner
    runner.recent_limit = 2
    ids = [await _submit(client, f"small {i}") for i in range(3)]
    for job_id in ids:
        await service.wait(job_id, timeout=TIMEOUT)
    count, size = runner.recent_usage
    assert count == 2 and 0 < size < 64 * 1024
    assert [runner.live(job_id) is not None for job_id in ids] == [False, True, True]
    # A job bigger than the whole byte bound is not kept in memory at all.
    runner.recent_bytes_limit = 10_000
    big = await _submit(client, _big("z"))
    await service.wait(big, timeout=TIMEOUT)
    assert runner.live(big) is None and runner.recent_usage[1] <= 10_000
    assert (await service.get(big)).request is not None  # the store has it


async def test_ws_messages_carry_no_prompt(
    service: SdrestService, fake_engine: FakeEngine, client: httpx.AsyncClient
) -> None:
    fake_engine.hold = asyncio.Event()
    running = await _submit(client, _big("r"))
    await asyncio.wait_for(fake_engine.holding.wait(), TIMEOUT)
    queued = await _submit(client, _big("q"))
    ws = await _open(service, ADMIN)
    seen: dict[str, Any] = {}
    while not {running, queued} <= set(seen):
        message = await ws.receive()
        assert len(message["text"]) < 4096, message["text"][:200]
        data = json.loads(message["text"])["data"]
        if "job_id" in data:
            seen[data["job_id"]] = data
    fake_engine.hold.set()
    await service.wait(queued, timeout=TIMEOUT)
    await ws.disconnect()


def test_shorten() -> None:
    assert shorten("abc", 3) == ("abc", False)
    assert shorten("abcd", 3) == ("ab" + ELLIPSIS, True)
    assert shorten("", 3) == ("", False)


def test_job_size_counts_the_texts() -> None:
    small = new_job("img_gen", "", "sdcpp", "tiny", request=ImgGenRequest(prompt="x"))
    big = new_job("img_gen", "", "sdcpp", "tiny", request=ImgGenRequest(prompt="x" * BIG))
    assert job_size(small) < 4096 and job_size(big) - job_size(small) == BIG - 1
