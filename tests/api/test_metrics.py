"""``GET /metrics``: the Prometheus text format, moved by jobs and requests, and its access rule
(admins, or the bearer of ``--metrics-token``; anyone while authentication is off)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sdrest.app import create_app
from sdrest.jobs.events import JobEvent
from sdrest.schemas import ImgGenRequest
from sdrest.schemas.job import new_job
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.api.support import add_accounts, bearer, make_settings, token_for
from tests.fakes import FakeEngine

METRICS_TOKEN = "scrape-me-please"


async def scrape(http: httpx.AsyncClient, **headers: str) -> dict[str, float]:
    """Every sample as ``name{label="value",...}`` -> value (labels sorted by name)."""
    resp = await http.get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def wait_done(http: httpx.AsyncClient, job_id: str) -> None:
    resp = await http.get(f"/sdcpp/v1/jobs/{job_id}", params={"wait": 10})
    assert resp.json()["status"] == "completed", resp.text


async def test_a_job_and_requests_move_the_metrics(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    before = await scrape(client)
    assert before["sdrest_queue_depth{}"] == 0
    assert before["sdrest_engine_worker_starts_total{}"] == 0
    assert not any(name.startswith("sdrest_jobs_finished_total") for name in before)

    body = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 3}}
    created = (await client.post("/sdcpp/v1/img_gen", json=body)).json()
    await wait_done(client, created["id"])
    assert (await client.get("/api/queue/job/job_1_ab")).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404

    after = await scrape(client)
    job = 'family="sdcpp",kind="img_gen"'
    assert after[f"sdrest_jobs_submitted_total{{{job}}}"] == 1
    assert after[f'sdrest_jobs_finished_total{{{job},state="completed"}}'] == 1
    model = 'kind="img_gen",model="tiny"'
    assert after[f"sdrest_job_duration_seconds_count{{{model}}}"] == 1
    assert after[f"sdrest_job_queue_wait_seconds_count{{{model}}}"] == 1
    assert after['sdrest_step_duration_seconds_count{model="tiny"}'] == 3  # one per step
    assert after['sdrest_model_loads_total{model="tiny"}'] == 1  # the job loaded its model
    assert after['sdrest_model_load_seconds_count{model="tiny"}'] == 1
    assert after['sdrest_model_loaded{model="tiny"}'] == 1
    assert after["sdrest_jobs_running{}"] == 0
    # Routes by template, never the raw path; a path no route has is "unmatched".
    poll = 'method="GET",route="/sdcpp/v1/jobs/{job_id}"'
    assert after[f'sdrest_http_requests_total{{{poll},status="200"}}'] >= 1
    missing = 'method="GET",route="/api/queue/job/{job_id}",status="404"'
    assert after[f"sdrest_http_requests_total{{{missing}}}"] == 1
    assert after['sdrest_http_requests_total{method="GET",route="unmatched",status="404"}'] == 1
    assert after['sdrest_http_request_duration_seconds_count{method="GET",route="/metrics"}'] == 1
    assert not any(created["id"] in name for name in after)

    # A second job on the loaded model loads nothing.
    created = (await client.post("/sdcpp/v1/img_gen", json=body)).json()
    await wait_done(client, created["id"])
    again = await scrape(client)
    assert again[f'sdrest_jobs_finished_total{{{job},state="completed"}}'] == 2
    assert again['sdrest_model_loads_total{model="tiny"}'] == 1


async def test_every_family_answers_with_a_request_id(client: httpx.AsyncClient) -> None:
    for path in ("/api/health", "/sdcpp/v1/jobs/job_1_ab", "/v1/models", "/api/queue/job/x"):
        resp = await client.get(path)
        assert resp.headers["x-request-id"].startswith("req_"), path
    error = await client.get("/api/queue/job/job_1_ab")
    # The /api error document names the same id as the header.
    assert error.json()["error"]["request_id"] == error.headers["x-request-id"]


async def test_apps_keep_their_own_metrics(tmp_path: Path, settings: Settings) -> None:
    async with SdrestService(settings, engine=FakeEngine()) as service:
        first, second = create_app(service), create_app(service)
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await http.get("/api/health")
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            samples = await scrape(http)
    health = 'sdrest_http_requests_total{method="GET",route="/api/health",status="200"}'
    assert health not in samples
    assert first.state.metrics.registry is not second.state.metrics.registry


@pytest.fixture
async def jwt_http(
    tmp_path: Path, models_dir: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = make_settings(tmp_path, models_dir, "jwt", metrics_token=METRICS_TOKEN)
    add_accounts(settings)
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, settings


async def test_only_admins_and_the_metrics_token_may_scrape(
    jwt_http: tuple[httpx.AsyncClient, Settings],
) -> None:
    http, settings = jwt_http
    assert (await http.get("/metrics")).status_code == 401
    assert (await http.get("/metrics", headers=bearer("not-the-token"))).status_code == 401
    user = bearer(token_for(settings, "alice"))
    assert (await http.get("/metrics", headers=user)).status_code == 403
    admin = bearer(token_for(settings, "root"))
    assert (await http.get("/metrics", headers=admin)).status_code == 200
    samples = await scrape(http, **bearer(METRICS_TOKEN))
    assert samples['sdrest_http_requests_total{method="GET",route="/metrics",status="401"}'] == 2
    # The metrics token grants /metrics and nothing else.
    for path in ("/api/queue/status", "/api/config", "/api/system"):
        assert (await http.get(path, headers=bearer(METRICS_TOKEN))).status_code == 401, path
    # The token is a secret: no settings listing shows it.
    config = await http.get("/api/config", headers=admin)
    assert METRICS_TOKEN not in config.text


async def test_a_node_counts_the_jobs_it_accepted_and_each_once(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    request = ImgGenRequest(prompt="a cat", width=64, height=64)
    job = 'family="sdcpp",kind="img_gen"'

    def lifecycle(job_id: str, *, relayed: bool, requeued: bool = False) -> None:
        base = new_job("img_gen", "", "sdcpp", "tiny", request=request)
        base = msgspec.structs.replace(base, id=job_id)
        states = ["queued", "generating", *(["queued", "generating"] if requeued else [])]
        for status in [*states, "completed"]:
            now = time.time()
            current = msgspec.structs.replace(
                base, status=status, started=now, completed=now if status == "completed" else None
            )
            service.events.publish(JobEvent("state", current, relayed=relayed))

    # Another node's job, seen through the relay: counted there, not here.
    lifecycle("job_1_elsewhere", relayed=True)
    samples = await scrape(client)
    assert f"sdrest_jobs_submitted_total{{{job}}}" not in samples
    assert not any(name.startswith("sdrest_jobs_finished_total{") for name in samples)
    # A job of this node that went back to the queue once (a coalesced call was stopped).
    lifecycle("job_2_here", relayed=False, requeued=True)
    samples = await scrape(client)
    assert samples[f"sdrest_jobs_submitted_total{{{job}}}"] == 1
    assert samples[f'sdrest_jobs_finished_total{{{job},state="completed"}}'] == 1
