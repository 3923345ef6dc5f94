"""API nodes and worker nodes as real processes on one PostgreSQL database: a mixed load of the
four families, and an API node killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from websockets.asyncio.client import connect

from sdrest.jobs.events import JobEvent
from tests.cluster.processes import stop_processes

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]
STEP = 0.02
"""Seconds per fake step: the default two steps take a few hundredths of a second."""
FAST = {"lease_seconds": 2.0, "heartbeat_seconds": 0.3, "affinity_wait": 0.0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """Node processes sharing one database, models folder and (shared) output folder."""

    def __init__(self, tmp_path: Path, models_dir: Path, database_url: str) -> None:
        self.database_url = database_url
        self.flags: dict[str, Any] = {
            "models_dir": str(models_dir),
            "output_dir": str(tmp_path / "outputs"),
            "database_url": database_url,
            "max_queue": 64,
            **FAST,
        }
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, *args: str, **flags: Any) -> subprocess.Popen[bytes]:
        settings = {
            **self.flags,
            "node_name": name,
            "data_dir": str(self.tmp_path / name),
            **flags,
        }
        command = [sys.executable, "-m", "tests.cluster.fake_node", args[0]]
        proc = subprocess.Popen(
            [*command, json.dumps(settings), str(STEP), *args[1:]],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, "worker")

    def api(self, name: str) -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        proc = self._spawn(name, "api", str(port), engine_workers=0)
        return proc, f"http://127.0.0.1:{port}"

    def stop_all(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
def cluster(tmp_path: Path, models_dir: Path, database_url: str) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path, models_dir, database_url)
    try:
        yield nodes
    finally:
        nodes.stop_all()


async def _ready(base: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            if (await client.get("/api/health")).status_code == 200:
                return client
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{base} never came up"
        await asyncio.sleep(0.1)


async def _poll_sdcpp(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = (await client.get(f"/sdcpp/v1/jobs/{job_id}")).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


def _completed_events(database_url: str) -> Counter[str]:
    """How many times each job's "completed" state was announced (over every node)."""
    decoder = msgspec.json.Decoder(JobEvent)
    seen: Counter[str] = Counter()
    with psycopg.connect(database_url) as conn:
        for (body,) in conn.execute("SELECT body FROM job_events WHERE type = 'state'"):
            event = decoder.decode(bytes(body))
            if event.job.status == "completed":
                seen[event.job.id] += 1
    return seen


async def test_two_api_nodes_three_workers_mixed_families_every_job_ends_once(
    cluster: Cluster,
) -> None:
    _, base_a = cluster.api("api-a")
    _, base_b = cluster.api("api-b")
    for n in range(3):
        cluster.worker(f"worker-{n}")
    a, b = await _ready(base_a), await _ready(base_b)
    body = {"prompt": "a cat", "width": 64, "height": 64}
    try:

        async def sdcpp(submit: httpx.AsyncClient, poll: httpx.AsyncClient) -> str:
            created = await submit.post("/sdcpp/v1/img_gen", json=body)
            assert created.status_code == 202, created.text
            done = await _poll_sdcpp(poll, created.json()["id"])
            assert done["status"] == "completed", done
            return str(done["id"])

        async def rest(submit: httpx.AsyncClient, poll: httpx.AsyncClient) -> str:
            created = await submit.post("/api/generate/text2img", json={**body, "steps": 2})
            assert created.status_code == 202, created.text
            job_id = str(created.json()["job_id"])
            done = await _poll_sdcpp(poll, job_id)  # one job system: any family's view
            assert done["status"] == "completed", done
            return job_id

        async def openai(submit: httpx.AsyncClient, _: httpx.AsyncClient) -> str:
            generation = {"prompt": "x", "size": "64x64"}
            answer = await submit.post("/v1/images/generations", json=generation)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"][0]["b64_json"]
            return ""

        async def sdapi(submit: httpx.AsyncClient, _: httpx.AsyncClient) -> str:
            answer = await submit.post("/sdapi/v1/txt2img", json={**body, "steps": 2})
            assert answer.status_code == 200, answer.text
            assert answer.json()["images"]
            return ""

        calls = []
        for n in range(4):
            first, second = (a, b) if n % 2 == 0 else (b, a)
            calls += [f(first, second) for f in (sdcpp, rest, openai, sdapi)]
        await asyncio.wait_for(asyncio.gather(*calls), 90)
        jobs = (await a.get("/sdcpp/v1/jobs", params={"limit": 100})).json()
        with psycopg.connect(cluster.database_url) as conn:
            rows = conn.execute("SELECT id, status FROM jobs").fetchall()
        assert len(rows) == 16 and {status for _, status in rows} == {"completed"}, rows
        announced = _completed_events(cluster.database_url)
        assert {job_id for job_id, _ in rows} == set(announced), announced
        assert set(announced.values()) == {1}  # every job ended exactly once
        health = (await b.get("/api/health")).json()
        assert health["nodes"] == 5 and health["engine_workers"] == 3, health
        assert jobs  # the listing works on a node that ran none of them
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_killed_api_node_s_jobs_finish_and_a_new_api_node_serves_them(
    cluster: Cluster,
) -> None:
    doomed, base = cluster.api("api-doomed")
    cluster.worker("worker-0")
    client = await _ready(base)
    long = {"prompt": "x", "width": 64, "height": 64, "sample_params": {"sample_steps": 40}}
    ids = []
    for _ in range(2):
        created = await client.post("/sdcpp/v1/img_gen", json=long)
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    await client.aclose()
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    _, fresh_base = cluster.api("api-fresh")
    fresh = await _ready(fresh_base)
    try:
        for job_id in ids:
            done = await _poll_sdcpp(fresh, job_id)
            assert done["status"] == "completed", done
            assert done["result"]["images"][0]["b64_json"]  # read from the shared outputs
    finally:
        await fresh.aclose()


async def test_a_job_deleted_on_one_api_node_is_announced_on_the_others_ws(
    cluster: Cluster,
) -> None:
    _, base_a = cluster.api("api-a")
    _, base_b = cluster.api("api-b")
    cluster.worker("worker-0")
    a, b = await _ready(base_a), await _ready(base_b)
    body = {"prompt": "a cat", "width": 64, "height": 64}
    try:
        created = await a.post("/sdcpp/v1/img_gen", json=body)
        job_id = created.json()["id"]
        assert (await _poll_sdcpp(a, job_id))["status"] == "completed"
        async with connect(base_b.replace("http://", "ws://") + "/ws") as socket:
            assert json.loads(await socket.recv())["type"] == "connected"
            assert (await a.delete(f"/api/queue/job/{job_id}")).status_code == 200
            async with asyncio.timeout(15):
                while True:
                    message = json.loads(await socket.recv())
                    if message["type"] == "job_deleted":
                        break
            assert message["data"]["job_id"] == job_id
        assert (await b.get(f"/sdcpp/v1/jobs/{job_id}")).status_code == 404
    finally:
        await a.aclose()
        await b.aclose()
