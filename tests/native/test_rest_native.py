"""/api end to end through the real library: text2img over HTTP, progress over /ws with the
`websockets` client, then the image and its thumbnail downloaded."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from tests.live import LiveServer

pytestmark = pytest.mark.native


async def test_text2img_progress_over_ws_then_download(live: LiveServer) -> None:
    ws_url = live.url.replace("http://", "ws://") + "/ws"
    async with connect(ws_url) as socket, httpx.AsyncClient(base_url=live.url) as http:
        assert json.loads(await socket.recv())["type"] == "connected"
        body = {
            "prompt": "a lovely cat",
            "width": 64,
            "height": 64,
            "steps": 2,
            "cfg_scale": 1.0,
            "sampling_method": "euler",
            "seed": 3,
        }
        created = await http.post("/api/generate/text2img", json=body)
        assert created.status_code == 202, created.text
        job_id = created.json()["request_id"]

        updates: list[dict[str, Any]] = []
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), 60))
            if message["type"] != "job_update" or message["data"]["job_id"] != job_id:
                continue
            updates.append(message["data"])
            if message["data"]["status"] in ("completed", "failed", "cancelled"):
                break

        assert updates[-1]["status"] == "completed", updates[-1]
        sampling = [u for u in updates if u["phase"] == "sampling"]
        assert [u["current_step"] for u in sampling][-2:] == [1, 2]
        assert all(u["total_steps"] == 2 for u in sampling)
        fractions = [u["progress"] for u in updates]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        output = updates[-1]["outputs"][0]

        image = await http.get(output)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).size == (64, 64)
        thumb = await http.get(f"/api/v1/jobs/{job_id}/output/image_0.png?thumb=true&size=50")
        assert thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size == (50, 50)

        job = (await http.get(f"/api/queue/job/{job_id}")).json()["job"]
        assert job["status"] == "completed" and job["parameters"]["seed"] == 3
        assert job["model"] == "tiny-flux2" and job["outputs"][0]["url"] == output
