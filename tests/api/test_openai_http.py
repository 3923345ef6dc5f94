"""/v1 (OpenAI images) over HTTP with a fake engine: replies, every error case, auth, queue."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdrest.app import create_app
from sdrest.auth.principal import SCOPE_KEY, Principal
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.conftest import settings_in
from tests.fakes import FakeEngine

GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    # A small per-image limit, so the 413 for one oversize upload is cheap to provoke.
    return settings_in(tmp_path, models_dir, max_queue=3, max_image_mb=0.05)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def assert_openai_error(
    resp: httpx.Response, status: int, param: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


# -- models ------------------------------------------------------------------------------------


async def test_models_lists_the_registry(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny"]
    assert body["data"][0]["object"] == "model" and isinstance(body["data"][0]["created"], int)
    one = await client.get("/v1/models/tiny")
    assert one.status_code == 200 and one.json()["id"] == "tiny"
    error = assert_openai_error(await client.get("/v1/models/nope"), 404, "model")
    assert error["code"] == "model_not_found"


# -- generations -------------------------------------------------------------------------------


async def test_generation_b64(client: httpx.AsyncClient, service: SdrestService) -> None:
    resp = await client.post(
        GEN, json={"prompt": "a cat", "n": 2, "size": "64x80", "seed": 7, "model": "tiny"}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["output_format"] == "png" and body["size"] == "64x80"
    assert isinstance(body["created"], int)
    images = [decoded(item["b64_json"]) for item in body["data"]]
    assert [img.size for img in images] == [(64, 80), (64, 80)]
    assert [img.convert("RGB").getpixel((0, 0)) for img in images] == [
        (7, 0, 0),
        (8, 0, 0),
    ]  # the fake paints the seed
    job_id = resp.headers["x-sdrest-job-id"]
    job = (await client.get(f"/sdcpp/v1/jobs/{job_id}")).json()
    assert job["status"] == "completed" and job["model"] == "tiny"
    jobs = await service.list_jobs()
    assert [(j.id, j.family) for j in jobs] == [(job_id, "openai")]


async def test_generation_url_points_at_the_served_file(
    client: httpx.AsyncClient, service: SdrestService
) -> None:
    resp = await client.post(GEN, json={"prompt": "x", "response_format": "url", "size": "64x64"})
    assert resp.status_code == 200, resp.text
    url = resp.json()["data"][0]["url"]
    job_id = resp.headers["x-sdrest-job-id"]
    # No --public-url: the bound address (never the Host header, here "test").
    prefix = f"http://127.0.0.1:8080/api/queue/job/{job_id}/output/"
    assert url.startswith(prefix)
    path = service.output_file(job_id, url[len(prefix) :])
    served = await client.get(url)  # the /api family serves it, without credentials
    assert served.status_code == 200 and served.content == path.read_bytes()


async def test_generation_options_reach_the_engine(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    prompt = 'a dog <sd_cpp_extra_args>{"sample_params": {"sample_steps": 5}}</sd_cpp_extra_args>'
    resp = await client.post(
        GEN,
        json={
            "prompt": prompt,
            "model": "dall-e-3",  # a stock client's hard-coded name: the default model
            "size": "64x64",
            "output_format": "jpeg",
            "output_compression": 80,
            "negative_prompt": "cats",
            "cfg_scale": 2.5,
            "sampler": "euler",
            "quality": "hd",
            "style": "natural",
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["output_format"] == "jpeg"
    assert body["data"][0]["revised_prompt"] == "a dog"
    assert decoded(body["data"][0]["b64_json"]).format == "JPEG"
    req = fake_engine.calls[-1].request
    assert (req.prompt, req.negative_prompt, req.output_compression) == ("a dog", "cats", 80)
    assert req.sample_params.sample_steps == 5 and req.sample_params.guidance.txt_cfg == 2.5


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b'["prompt"]', 400, None),
        (b'{"size": "64x64"}', 400, "prompt"),
        (b'{"prompt": "x", "promt": 1}', 400, None),
        (b'{"prompt": "x", "size": "huge"}', 400, "size"),
        (b'{"prompt": "x", "size": "100000x64"}', 400, "size"),
        (b'{"prompt": "x", "n": 99}', 400, "n"),
        (b'{"prompt": "x", "steps": 1000}', 400, "steps"),
        (b'{"prompt": "x", "output_format": "gif"}', 400, "output_format"),
        (b'{"prompt": "x", "response_format": "xml"}', 400, "response_format"),
        (b'{"prompt": "x", "stream": true, "partial_images": 4}', 400, "partial_images"),
        (b'{"prompt": "x", "lora": [{"path": "../../etc/passwd"}]}', 400, "lora"),
        (b'{"prompt": "x <sd_cpp_extra_args>[1]</sd_cpp_extra_args>"}', 400, "prompt"),
        (b'{"prompt": "x", "model": "nope"}', 404, "model"),
        (b'{"prompt": "x", "lora": [{"path": "missing"}]}', 404, "lora"),
    ],
)
async def test_bad_generations(
    client: httpx.AsyncClient, body: bytes, status: int, param: str | None
) -> None:
    resp = await client.post(GEN, content=body, headers={"content-type": "application/json"})
    error = assert_openai_error(resp, status, param)
    kind = "invalid_request_error"
    assert error["type"] == kind


async def test_unknown_model_uses_openais_code(client: httpx.AsyncClient) -> None:
    resp = await client.post(GEN, json={"prompt": "x", "model": "gpt-9"})
    error = assert_openai_error(resp, 404, "model")
    assert error["code"] == "model_not_found" and "tiny" in error["message"]


async def test_oversize_body_is_a_413(client: httpx.AsyncClient) -> None:
    big = b'{"prompt": "' + b"x" * (64 * 1024 * 1024) + b'"}'
    resp = await client.post(GEN, content=big, headers={"content-type": "application/json"})
    assert_openai_error(resp, 413)


async def test_unknown_routes_and_methods_are_openai_shaped(client: httpx.AsyncClient) -> None:
    assert_openai_error(await client.get("/v1/nothing-here"), 404)
    error = assert_openai_error(await client.get(GEN), 405)
    assert error["code"] == "method_not_allowed"
    assert_openai_error(await client.delete("/v1/models"), 405)


async def test_engine_failure_is_a_server_error(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_with = "native said no"
    resp = await client.post(GEN, json={"prompt": "x", "size": "64x64"})
    error = assert_openai_error(resp, 500)
    assert error["type"] == "server_error" and error["code"] == "generation_failed"
    assert "native said no" in error["message"]
    job = (await client.get(f"/sdcpp/v1/jobs/{resp.headers['x-sdrest-job-id']}")).json()
    assert job["status"] == "failed"


async def test_full_queue_is_a_429(
    client: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    fake_engine.hold = asyncio.Event()
    body = {"prompt": "x", "size": "64x64"}
    first = asyncio.create_task(client.post(GEN, json=body))
    await asyncio.wait_for(fake_engine.started.wait(), 5)
    waiting = [asyncio.create_task(client.post(GEN, json=body)) for _ in range(3)]
    for _ in range(500):  # until the three wait in the queue (max_queue is 3)
        if len(service.queue_snapshot().queued_ids) == 3:
            break
        await asyncio.sleep(0.01)
    error = assert_openai_error(await client.post(GEN, json=body), 429)
    assert error["type"] == "rate_limit_error" and error["code"] == "queue_full"
    fake_engine.hold.set()
    replies = await asyncio.gather(first, *waiting)
    assert [r.status_code for r in replies] == [200] * 4


# -- auth --------------------------------------------------------------------------------------


def _as(principal: Principal, app: ASGIApp) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = principal
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
async def as_user(service: SdrestService) -> AsyncIterator[Any]:
    """A client factory acting as a given principal (what the auth middleware would set)."""
    clients: list[httpx.AsyncClient] = []

    def make(principal: Principal) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=_as(principal, create_app(service)))
        http = httpx.AsyncClient(transport=transport, base_url="http://test")
        clients.append(http)
        return http

    yield make
    for http in clients:
        await http.aclose()


async def test_unidentified_callers_get_401(as_user: Any) -> None:
    anonymous = as_user(Principal(username="", role="anonymous"))
    error = assert_openai_error(await anonymous.post(GEN, json={"prompt": "x"}), 401)
    assert error["type"] == "authentication_error"
    assert_openai_error(await anonymous.get("/v1/models"), 401)
    rejected = as_user(Principal(username="", role="guest", auth_failure="token expired"))
    error = assert_openai_error(await rejected.post(EDIT, files={"image": b"x"}), 401)
    assert "token expired" in error["message"]
    assert_openai_error(await rejected.get("/v1/models/tiny"), 401)


async def test_jobs_belong_to_the_caller(as_user: Any, service: SdrestService) -> None:
    bob = as_user(Principal(username="bob", role="user", user_id=2, authenticated=True))
    assert (await bob.get("/v1/models")).status_code == 200
    resp = await bob.post(GEN, json={"prompt": "x", "size": "64x64"})
    assert resp.status_code == 200, resp.text
    jobs = await service.list_jobs(owner="bob")
    assert [j.id for j in jobs] == [resp.headers["x-sdrest-job-id"]]
    assert jobs[0].family == "openai"


# -- edits -------------------------------------------------------------------------------------


def rgba_with_hole() -> bytes:
    image = Image.new("RGBA", (64, 80), (10, 200, 30, 255))
    image.paste((0, 0, 0, 0), (0, 0, 16, 16))
    return png(image)


async def test_edit_with_transparent_area(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    resp = await client.post(
        EDIT,
        files={"image": ("cat.png", rgba_with_hole(), "image/png")},
        data={"prompt": "fill the hole", "n": "2", "seed": "3"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["data"]) == 2 and body["size"] == "64x80"
    plan = fake_engine.calls[-1]
    assert plan.init_image is not None and plan.init_image.mode == "RGB"
    assert plan.mask_image is not None
    assert plan.mask_image.getpixel((2, 2)) == 255 and plan.mask_image.getpixel((50, 40)) == 0
    assert plan.request.strength == 1.0 and plan.request.batch_count == 2


async def test_edit_with_images_and_mask(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    images = [png(Image.new("RGB", (64, 64), c)) for c in ("red", "blue")]
    resp = await client.post(
        EDIT,
        files=[
            ("image[]", ("a.png", images[0], "image/png")),
            ("image[]", ("b.png", images[1], "image/png")),
            ("mask", ("m.png", rgba_with_hole_64(), "image/png")),
        ],
        data={"prompt": "x", "response_format": "url", "size": "64x64", "model": "tiny"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"][0]["url"].startswith("http://127.0.0.1:8080/api/queue/job/")
    plan = fake_engine.calls[-1]
    assert plan.init_image is not None and plan.init_image.getpixel((0, 0)) == (255, 0, 0)
    assert [r.getpixel((0, 0)) for r in plan.ref_images] == [(0, 0, 255)]
    assert plan.mask_image is not None and plan.mask_image.getpixel((1, 1)) == 255


def rgba_with_hole_64() -> bytes:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 8, 8))
    return png(image)


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"json": {"prompt": "x"}}, 400, None),  # not multipart
        ({"data": {"prompt": "x"}, "files": {"other": b"x"}}, 400, "other"),
        ({"data": {"prompt": "x"}, "files": {"mask": b"x"}}, 400, "image"),
        ({"data": {"prompt": "x"}, "files": {"image": ("a.png", b"not a png")}}, 400, "image[0]"),
        ({"data": {"prompt": "x", "image": "%%%"}, "files": {"mask": b"x"}}, 400, "image[0]"),
        (
            {"data": {"n": "1"}, "files": {"image": ("a.png", png(Image.new("RGB", (64, 64))))}},
            400,
            "prompt",
        ),
        ({"data": {"prompt": "x", "n": "lots"}, "files": {"image": ("a", b"x")}}, 400, "n"),
        (
            {
                "data": {"prompt": "x", "model": "nope"},
                "files": {"image": ("a.png", png(Image.new("RGB", (64, 64))))},
            },
            404,
            "model",
        ),
        ({"data": {"prompt": "x"}, "files": {"image": ("a.png", b"\0" * 60_000)}}, 413, None),
        (
            {
                "data": {"prompt": "x"},
                "files": [("image[]", ("a.png", png(Image.new("RGB", (8, 8)))))] * 18,
            },
            400,
            None,
        ),
        (
            {
                "data": {"prompt": "x"},
                "files": [
                    ("image", ("a.png", png(Image.new("RGB", (64, 64))))),
                    ("mask", ("m.png", png(Image.new("RGBA", (64, 64))))),
                    ("mask", ("m.png", png(Image.new("RGBA", (64, 64))))),
                ],
            },
            400,
            "mask",
        ),
    ],
)
async def test_bad_edits(
    client: httpx.AsyncClient, kwargs: dict[str, Any], status: int, param: str | None
) -> None:
    assert_openai_error(await client.post(EDIT, **kwargs), status, param)


async def test_malformed_multipart_is_a_400(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        EDIT,
        content=b"--zzz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n",
        headers={"content-type": "multipart/form-data"},  # no boundary either
    )
    assert_openai_error(resp, 400)


# -- disconnect --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_stops_the_job(
    service: SdrestService, fake_engine: FakeEngine, stream: bool
) -> None:
    fake_engine.hold = asyncio.Event()
    app = create_app(service)
    body = json.dumps({"prompt": "x", "size": "64x64", "stream": stream}).encode()
    gone = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        if not sent:
            sent.append({"type": "http.request"})
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": GEN,
        "raw_path": GEN.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }
    call = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(fake_engine.started.wait(), 5)
    gone.set()  # the client goes away while its job is generating
    await asyncio.wait_for(call, 5)
    fake_engine.hold.set()
    jobs = await service.list_jobs()
    job = await service.wait(jobs[0].id, timeout=5)
    assert job.status == "cancelled" and job.error is not None
    assert job.error.code == "interrupted"
    assert not job.result


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_stream_sends_partial_images_then_the_finished_ones(
    client: httpx.AsyncClient, service: SdrestService, fake_engine: FakeEngine
) -> None:
    body = {"prompt": "a cat", "size": "64x64", "n": 2, "steps": 6, "stream": True,
            "partial_images": 2, "seed": 5}  # fmt: skip
    # Held after its last step, the job stays running while the stream sends its partials (a
    # job that finishes first simply sends fewer, as OpenAI allows).
    fake_engine.hold = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, fake_engine.hold.set)
    resp = await client.post(GEN, json=body)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    kinds = [kind for kind, _ in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"] * 2
    partials = [data for kind, data in events if kind.endswith("partial_image")]
    assert [p["partial_image_index"] for p in partials] == [0, 1]
    # The fake engine's preview of step k is green k: the first partial is sent once step 2's
    # preview exists (the latest preview then, since the fake runs ahead), the second later.
    pixels = [Image.open(io.BytesIO(base64.b64decode(p["b64_json"]))).getpixel((0, 0))
              for p in partials]  # fmt: skip
    greens = [pixel[1] for pixel in pixels if isinstance(pixel, tuple)]
    assert len(greens) == len(partials)
    assert 2 <= greens[0] < greens[1] <= 6
    done = [data for kind, data in events if kind.endswith("completed")]
    assert all(d["size"] == "64x64" and d["output_format"] == "png" for d in done)
    job = await service.get(resp.headers["x-sdrest-job-id"])
    assert job.status == "completed" and job.family == "openai"


async def test_stream_ends_with_an_error_event_when_the_job_fails(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_with = "native said no"
    resp = await client.post(GEN, json={"prompt": "x", "size": "64x64", "stream": True})
    (kind, data), = sse_events(resp.text)  # fmt: skip
    assert kind == "error" and data["type"] == "error"
    assert "native said no" in data["error"]["message"]


async def test_edit_can_stream_too(client: httpx.AsyncClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, "PNG")
    resp = await client.post(
        EDIT,
        data={"prompt": "a hat", "stream": "true"},
        files={"image": ("a.png", buf.getvalue(), "image/png")},
    )
    assert resp.status_code == 200, resp.text
    kinds = [kind for kind, _ in sse_events(resp.text)]
    assert kinds == ["image_edit.completed"]
