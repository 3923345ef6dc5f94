"""/sdapi/v1 listings, png-info and extras through the real library (tiny models).

The identity ESRGAN file upscales by exact nearest neighbour, so the image that comes back is
compared byte for byte. One test drives the routes in an app of its own over the native service;
the other drives the real server with the real ``webuiapi`` client.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx
import pytest
import webuiapi  # type: ignore[import-untyped]
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from sdrest.api.common import JSONResponse, error_status
from sdrest.api.sdapi.routes import INFO_ROUTES
from sdrest.errors import SdrestError
from sdrest.service import SdrestService
from tests.live import LiveServer
from tests.native.helpers import output_bytes, png_b64, quick, run

UPSCALER = "tiny-esrgan-x2"


def _pattern(width: int = 64, height: int = 48) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [((x * 4) % 256, (y * 5) % 256, (x * y) % 256) for y in range(height) for x in range(width)]
    )
    return image


def _render(request: Request, exc: Exception) -> Response:
    status, code, message = error_status(exc)
    return JSONResponse({"error": code, "detail": message}, status_code=status)


@pytest.fixture
async def api(native_service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Mount("/sdapi/v1", routes=INFO_ROUTES)],
        exception_handlers={SdrestError: _render},
    )
    app.state.service = native_service
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test/sdapi/v1/", timeout=120
    ) as http:
        yield http


async def test_info_routes_over_the_real_library(
    api: httpx.AsyncClient, native_service: SdrestService
) -> None:
    names = [m["model_name"] for m in (await api.get("sd-models")).json()]
    assert "tiny-flux2" in names
    upscalers = {u["name"]: u for u in (await api.get("upscalers")).json()}
    assert upscalers[UPSCALER]["scale"] == 2 and "broken-esrgan" not in upscalers

    source = _pattern()
    body = {"image": png_b64(source), "upscaler_1": UPSCALER, "upscaling_resize": 2}
    resp = await api.post("extra-single-image", json=body)
    assert resp.status_code == 200, resp.text
    result = Image.open(io.BytesIO(base64.b64decode(resp.json()["image"]))).convert("RGB")
    assert result.tobytes() == source.resize((128, 96), Image.Resampling.NEAREST).tobytes()

    broken = await api.post("extra-single-image", json={**body, "upscaler_1": "broken-esrgan"})
    assert broken.status_code == 400 and "broken-esrgan" in broken.json()["detail"]

    # 4x with a 2x file: two ESRGAN passes in one job, still exact nearest neighbour.
    four = await api.post("extra-single-image", json={**body, "upscaling_resize": 4})
    assert four.status_code == 200, four.text
    result = Image.open(io.BytesIO(base64.b64decode(four.json()["image"]))).convert("RGB")
    assert result.tobytes() == source.resize((256, 192), Image.Resampling.NEAREST).tobytes()

    job = await run(native_service, quick())
    assert job.result is not None and job.result.infotexts, job.error
    png = base64.b64encode(output_bytes(native_service, job)).decode()
    info = (await api.post("png-info", json={"image": png})).json()
    assert info["info"] == job.result.infotexts[0]
    assert info["parameters"]["Prompt"] == "a lovely cat"
    assert info["parameters"]["Model"] == "tiny-flux2"


def test_webuiapi_client_against_the_live_server(live: LiveServer) -> None:
    api = webuiapi.WebUIApi(baseurl=f"{live.url}/sdapi/v1")
    assert any(title.startswith("tiny-flux2") for title in api.util_get_model_names())
    assert UPSCALER in [u["name"] for u in api.get_upscalers()]

    source = _pattern()
    result = api.extra_single_image(image=source, upscaler_1=UPSCALER, upscaling_resize=2)
    assert result.image.size == (128, 96)
    expected = source.resize((128, 96), Image.Resampling.NEAREST)
    assert result.image.convert("RGB").tobytes() == expected.tobytes()
    assert "Postprocess upscaler: " + UPSCALER in result.info

    with pytest.raises(RuntimeError) as failure:
        api.extra_single_image(image=source, upscaler_1="broken-esrgan", upscaling_resize=2)
    assert failure.value.args[0] == 400
    again = api.extra_single_image(image=source, upscaler_1=UPSCALER, upscaling_resize=2)
    assert again.image.size == (128, 96)  # the server goes on

    # A generated PNG (made through /sdcpp/v1) read back with png_info.
    body = {
        "prompt": "a lovely cat",
        "width": 64,
        "height": 64,
        "seed": 5,
        "sample_params": {"sample_steps": 1},
    }
    created = httpx.post(f"{live.url}/sdcpp/v1/img_gen", json=body).json()
    done = httpx.get(f"{live.url}/sdcpp/v1/jobs/{created['id']}?wait=60", timeout=70).json()
    assert done["status"] == "completed", done
    generated = Image.open(io.BytesIO(base64.b64decode(done["result"]["images"][0]["b64_json"])))
    generated.load()
    info = api.png_info(generated)
    assert info.info.startswith("a lovely cat\n")
    assert info.json["parameters"]["Seed"] == "5"
