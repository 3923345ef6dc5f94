"""/v1 end to end: the real `openai` SDK, unmodified, against a live server on the library."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from sdrest.settings import load_settings
from sdrest.testing import TinyModelSet
from tests.live import LiveServer, live_server

pytestmark = pytest.mark.native

QUICK = {"steps": 1, "seed": 7, "cfg_scale": 1.0, "sampler": "euler"}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModelSet
) -> Iterator[LiveServer]:
    """One server (one model load) for the whole module: the machine is small and shared."""
    data = tmp_path_factory.mktemp("openai-native")
    settings = load_settings(
        {
            "models_dir": str(tiny_models.root),
            "data_dir": str(data),
            "model": "tiny-flux2",
            "threads": 2,
        },
        env={},
    )
    with live_server(settings) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def pixels(b64: str) -> tuple[tuple[int, int], bytes]:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image.size, image.convert("RGB").tobytes()


def infotext(b64: str) -> str:
    text = Image.open(io.BytesIO(base64.b64decode(b64))).info["parameters"]
    assert isinstance(text, str)
    return text


def test_models_list(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "tiny-flux2" in ids
    assert client.models.retrieve("tiny-flux2").owned_by == "local"


def test_generate_matches_the_native_family(client: openai.OpenAI, server: LiveServer) -> None:
    reply = client.images.generate(
        model="tiny-flux2",
        prompt="a lovely cat",
        n=2,
        size="64x64",
        response_format="b64_json",
        extra_body=QUICK,
    )
    assert reply.data is not None and len(reply.data) == 2
    images = [pixels(item.b64_json or "") for item in reply.data]
    assert [size for size, _ in images] == [(64, 64), (64, 64)]
    assert images[0][1] != images[1][1]  # seeds 7 and 8: two different images
    assert "Steps: 1," in infotext(reply.data[0].b64_json or "")  # extra_body arrived

    # The same request through /sdcpp/v1: the very same pixels (metadata may differ).
    body = {
        "prompt": "a lovely cat",
        "model": "tiny-flux2",
        "width": 64,
        "height": 64,
        "seed": 7,
        "batch_count": 2,
        "sample_params": {
            "sample_steps": 1,
            "sample_method": "euler",
            "guidance": {"txt_cfg": 1.0},
        },
    }
    created = httpx.post(server.url + "/sdcpp/v1/img_gen", json=body)
    assert created.status_code == 202, created.text
    job = httpx.get(f"{server.url}/sdcpp/v1/jobs/{created.json()['id']}?wait=60", timeout=70)
    native = [pixels(img["b64_json"]) for img in job.json()["result"]["images"]]
    assert native == images


def test_edit_with_a_transparent_area(client: openai.OpenAI) -> None:
    image = Image.new("RGBA", (64, 64), (200, 40, 40, 255))
    image.paste((0, 0, 0, 0), (16, 16, 48, 48))  # transparent: the area to repaint
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    reply = client.images.edit(
        model="tiny-flux2",
        image=("cat.png", buffer.getvalue(), "image/png"),
        prompt="a red square with a cat inside",
        size="64x64",
        response_format="b64_json",
        extra_body=QUICK,
    )
    assert reply.data is not None and len(reply.data) == 1
    size, _ = pixels(reply.data[0].b64_json or "")
    assert size == (64, 64)
    text = infotext(reply.data[0].b64_json or "")
    assert "Steps: 1," in text and "Seed: 7," in text  # form fields from extra_body arrived
    assert reply.size == "64x64" and reply.output_format == "png"


def test_errors_surface_as_sdk_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="x", size="huge")
    assert bad.value.param == "size" and bad.value.code == "invalid_request"
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(model="no-such-model", prompt="x")
    assert "no-such-model" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_streaming_with_partial_images(client: openai.OpenAI) -> None:
    stream = client.images.generate(
        model="tiny-flux2",
        prompt="a lovely cat",
        size="64x64",
        stream=True,
        partial_images=2,
        extra_body={**QUICK, "steps": 6},
    )
    events = list(stream)
    types = [event.type for event in events]
    assert types[-1] == "image_generation.completed" and types.count(types[-1]) == 1
    partials = [e for e in events if e.type == "image_generation.partial_image"]
    assert 1 <= len(partials) <= 2  # live previews, sent while the job was still sampling
    assert [p.partial_image_index for p in partials] == list(range(len(partials)))
    assert pixels(partials[0].b64_json)[0] == (64, 64)
    final = events[-1]
    assert final.type == "image_generation.completed"
    assert pixels(final.b64_json)[0] == (64, 64) and final.output_format == "png"


def test_refused_streams_are_sdk_errors(client: openai.OpenAI) -> None:
    # Checked before the stream starts, so they are ordinary HTTP errors; a job that fails
    # while streaming ends with an `error` event (tests/api/test_openai_http.py).
    with pytest.raises(openai.BadRequestError):
        client.images.generate(
            model="tiny-flux2",
            prompt="x",
            size="64x64",
            stream=True,
            extra_body={**QUICK, "lora": [{"path": "wrong-shape"}]},
        )
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="nope", prompt="x", stream=True, extra_body=QUICK)
