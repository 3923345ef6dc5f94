"""/sdapi/v1 end to end: the real ``webuiapi`` client against a live server on the real library."""

from __future__ import annotations

import base64
import io
import threading
import time
from typing import Any

import httpx
import pytest
import webuiapi  # type: ignore[import-untyped]
from PIL import Image

from tests.live import LiveServer

pytestmark = pytest.mark.native


def _pixels(b64: str) -> bytes:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def test_webuiapi_client_end_to_end(live: LiveServer) -> None:
    api = webuiapi.WebUIApi(host="127.0.0.1", port=live.port, sampler="Euler", steps=1)
    result = api.txt2img(prompt="a lovely cat", width=64, height=64, seed=3, cfg_scale=1.0)
    assert isinstance(result.image, Image.Image) and result.image.size == (64, 64)
    assert isinstance(result.info, dict), result.info  # info parsed from its JSON string
    assert result.info["all_seeds"] == [3] and result.info["sampler_name"] == "Euler"
    assert result.info["sd_model_name"] == "tiny-flux2"
    assert "Seed: 3" in result.info["infotexts"][0]

    again = api.img2img(
        images=[result.image], prompt="a lovely cat", width=64, height=64, seed=3,
        cfg_scale=1.0, denoising_strength=0.4, steps=2,
    )  # fmt: skip
    # With 2 steps and strength 0.4 sd.cpp starts from the image (1 step would start from noise).
    assert again.image.size == (64, 64)
    assert again.info["denoising_strength"] == 0.4
    assert again.image.convert("RGB").tobytes() != result.image.convert("RGB").tobytes()

    assert "Euler a" in [s["name"] for s in api.get_samplers()]
    assert "karras" in api.util_get_scheduler_names()
    options = api.get_options()
    assert options["sd_model_checkpoint"].startswith("tiny-flux2")
    assert api.set_options({"sd_model_checkpoint": "tiny-flux2.gguf"}) is None
    assert api.util_get_current_model().startswith("tiny-flux2")
    refused = httpx.post(
        live.url + "/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"}
    )
    assert refused.status_code == 404 and "tiny-flux2" in refused.json()["detail"]
    broken = httpx.post(live.url + "/sdapi/v1/options", json={"sd_model_checkpoint": "broken"})
    assert broken.status_code == 404  # an unreadable file is not offered as a checkpoint
    with pytest.raises(RuntimeError, match="422"):
        api.txt2img(prompt="x", width="wide")  # webuiapi raises on any non-200


def test_progress_seen_from_another_thread(live: LiveServer) -> None:
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=live.url) as client:
            while not done.is_set():
                seen.append(client.get("/sdapi/v1/progress").json())
                time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        resp = httpx.post(
            live.url + "/sdapi/v1/txt2img",
            json={"prompt": "a lovely cat", "width": 128, "height": 128, "steps": 4,
                  "cfg_scale": 1.0, "sampler_name": "Euler", "seed": 1},
            timeout=120,
        )  # fmt: skip
    finally:
        done.set()
        poller.join()
    assert resp.status_code == 200, resp.text
    active = [p for p in seen if p["state"]["job"]]
    assert active, "no poll saw the job"
    assert any(p["progress"] > 0 or p["state"]["sampling_step"] > 0 for p in active)
    assert all(p["state"]["sampling_steps"] in (0, 4) for p in active)
    assert seen[-1]["state"]["job"] == "" or seen[-1]["progress"] == 1.0


def test_same_pixels_as_sdcpp(live: LiveServer) -> None:
    sdapi = httpx.post(
        live.url + "/sdapi/v1/txt2img",
        json={"prompt": "a lovely cat", "negative_prompt": "", "width": 64, "height": 64,
              "steps": 2, "cfg_scale": 1.0, "sampler_name": "Euler", "scheduler": "Karras",
              "seed": 77, "batch_size": 1, "n_iter": 2},
        timeout=120,
    )  # fmt: skip
    assert sdapi.status_code == 200, sdapi.text
    body = {
        "prompt": "a lovely cat",
        "width": 64,
        "height": 64,
        "seed": 77,
        "batch_count": 2,
        "sample_params": {
            "sample_steps": 2,
            "sample_method": "euler",
            "scheduler": "karras",
            "guidance": {"txt_cfg": 1.0},
        },
    }
    created = httpx.post(live.url + "/sdcpp/v1/img_gen", json=body)
    job = httpx.get(f"{live.url}/sdcpp/v1/jobs/{created.json()['id']}?wait=60", timeout=70).json()
    assert job["status"] == "completed", job
    native = [image["b64_json"] for image in job["result"]["images"]]
    a1111 = sdapi.json()["images"]
    assert len(a1111) == len(native) == 2
    assert [_pixels(b) for b in a1111] == [_pixels(b) for b in native]
    assert _pixels(a1111[0]) != _pixels(a1111[1])  # consecutive seeds, different images


def test_interrupt_stops_a_running_txt2img_at_once(live: LiveServer) -> None:
    api = webuiapi.WebUIApi(host="127.0.0.1", port=live.port, sampler="Euler", steps=24)
    answer: list[Any] = []
    caller = threading.Thread(
        target=lambda: answer.append(api.txt2img(prompt="a cat", width=256, height=256, seed=1))
    )
    caller.start()
    deadline = time.monotonic() + 60
    while api.get_progress()["state"]["sampling_step"] < 1:
        assert time.monotonic() < deadline and caller.is_alive()
        time.sleep(0.05)
    started = time.monotonic()
    api.interrupt()
    caller.join(timeout=10)
    elapsed = time.monotonic() - started
    assert not caller.is_alive() and elapsed < 2.0, elapsed
    assert answer[0].images == [] and answer[0].info["interrupted"] is True
    after = api.txt2img(prompt="a cat", width=64, height=64, seed=2, steps=1, cfg_scale=1.0)
    assert after.image.size == (64, 64)  # the restarted worker serves the next request
