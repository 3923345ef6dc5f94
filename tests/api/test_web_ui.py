"""The web UI is served at /ui/ and every API call it makes reaches a real route."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from sdrest.web import STATIC_DIR

APP_JS = (STATIC_DIR / "app.js").read_text()
# String literals in app.js that name a server path ("/api/...", "/v1/...", "/sdcpp/v1/...").
CALLED = sorted(
    set(re.findall(r"[\"`](/(?:api|v1|sdcpp)/[A-Za-z0-9_/]*[A-Za-z0-9_])[\"`/]", APP_JS))
)


async def test_ui_is_served(client: httpx.AsyncClient) -> None:
    index = await client.get("/ui/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert 'src="app.js"' in index.text
    script = await client.get("/ui/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    root = await client.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/ui/"


def test_the_ui_calls_the_paths_we_expect() -> None:
    assert "/api/generate/text2img" in CALLED and "/api/queue/status" in CALLED
    assert len(CALLED) >= 8, CALLED


@pytest.mark.parametrize("path", CALLED)
async def test_every_path_the_ui_calls_is_routed(client: httpx.AsyncClient, path: str) -> None:
    path = path.rstrip("/")
    if path == "/api/queue/job":
        path += "/job_0_0"
    answer = await client.get(path)
    if answer.status_code == 405:
        answer = await client.post(path, json={})
    # 404 would mean "no such route"; a missing job is the one 404 that is about data.
    assert answer.status_code != 405, path
    assert answer.status_code != 404 or "JOB_NOT_FOUND" in answer.text, (path, answer.text)


async def test_the_ui_generate_body_is_accepted(client: httpx.AsyncClient) -> None:
    body = {
        "prompt": "a lovely cat",
        "model_name": "tiny",
        "width": 512,
        "height": 512,
        "steps": 20,
        "cfg_scale": 7,
        "seed": "random",
        "batch_count": 1,
    }
    created = await client.post("/api/generate/text2img", json=body)
    assert created.status_code == 202, created.text
    status = await client.get("/api/queue/status")
    assert created.json()["request_id"] in [j["id"] for j in status.json()["queue"]["jobs"]]


def test_static_files_ship_with_the_package() -> None:
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in Path(STATIC_DIR).iterdir()}
