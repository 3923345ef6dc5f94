"""The live-server fixture serves real HTTP over the real library."""

import httpx

from tests.live import LiveServer


def test_live_server_generates(live: LiveServer) -> None:
    health = httpx.get(live.url + "/api/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    body = {"prompt": "x", "width": 64, "height": 64, "sample_params": {"sample_steps": 1}}
    created = httpx.post(live.url + "/sdcpp/v1/img_gen", json=body)
    assert created.status_code == 202
    job = httpx.get(f"{live.url}/sdcpp/v1/jobs/{created.json()['id']}?wait=60", timeout=70)
    assert job.json()["status"] == "completed", job.json()
