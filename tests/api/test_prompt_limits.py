"""``--max-prompt-chars``: one check (planning) gives every family its own 400 naming the field;
the limit is advertised; extra-args blocks and prompt LoRA tags cannot slip past it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdrest.app import create_app
from sdrest.errors import InvalidRequestError
from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.conftest import settings_in
from tests.fakes import FakeEngine

LIMIT = 40


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return settings_in(tmp_path, models_dir, max_prompt_chars=LIMIT, a1111_prompt_loras=True)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


ROUTES = {
    "sdcpp": "/sdcpp/v1/img_gen",
    "openai": "/v1/images/generations",
    "sdapi": "/sdapi/v1/txt2img",
    "rest": "/api/generate/text2img",
}


def body_for(family: str, field: str, text: str) -> dict[str, Any]:
    base: dict[str, Any] = {"prompt": "a cat"}
    if family == "openai":
        base["size"] = "64x64"
    else:
        base.update(width=64, height=64)
    base[field] = text
    return base


def assert_names_field(family: str, resp: httpx.Response, field: str) -> None:
    """The family's own 400 shape, naming ``field``."""
    assert resp.status_code == 400, resp.text
    payload = resp.json()
    message = f"{field} is {LIMIT + 1} characters long; at most {LIMIT} are allowed"
    if family == "openai":
        assert payload["error"]["param"] == field
        assert payload["error"]["type"] == "invalid_request_error"
        assert payload["error"]["message"] == message
    elif family == "rest":
        assert payload["error"]["field"] == field
        assert payload["error"]["code"] == "INVALID_PARAMETERS"
        assert payload["error"]["message"] == message
    elif family == "sdapi":
        assert payload["field"] == field and payload["detail"] == message
        assert payload["errors"] == f"400: {message}"
    else:
        assert payload == {"error": message, "code": "invalid_request", "field": field}


@pytest.mark.parametrize("family", sorted(ROUTES))
@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
async def test_one_char_over_is_a_400_naming_the_field(
    client: httpx.AsyncClient, family: str, field: str
) -> None:
    ok = await client.post(ROUTES[family], json=body_for(family, field, "x" * LIMIT))
    assert ok.status_code in (200, 202), ok.text
    over = await client.post(ROUTES[family], json=body_for(family, field, "x" * (LIMIT + 1)))
    assert_names_field(family, over, field)


@pytest.mark.parametrize("family", ["openai", "sdapi"])
async def test_an_extra_args_block_cannot_carry_a_longer_prompt(
    client: httpx.AsyncClient, family: str
) -> None:
    block = '<sd_cpp_extra_args>{"negative_prompt": "%s"}</sd_cpp_extra_args>' % ("x" * (LIMIT + 1))
    resp = await client.post(ROUTES[family], json=body_for(family, "prompt", "a cat" + block))
    assert_names_field(family, resp, "negative_prompt")
    # the block itself is not prompt text: a long block with a short prompt is fine
    fine = '<sd_cpp_extra_args>{"negative_prompt": "%s"}</sd_cpp_extra_args>' % ("x" * LIMIT)
    resp = await client.post(ROUTES[family], json=body_for(family, "prompt", "a cat" + fine))
    assert resp.status_code == 200, resp.text


async def test_prompt_lora_tags_do_not_count_and_the_rest_still_does(
    client: httpx.AsyncClient,
) -> None:
    tagged = "x" * LIMIT + "<lora:style:0.5>"
    resp = await client.post(ROUTES["sdapi"], json=body_for("sdapi", "prompt", tagged))
    assert resp.status_code == 200, resp.text
    resp = await client.post(ROUTES["sdapi"], json=body_for("sdapi", "prompt", "x" + tagged))
    assert_names_field("sdapi", resp, "prompt")


async def test_the_limit_is_advertised(client: httpx.AsyncClient) -> None:
    caps = (await client.get("/sdcpp/v1/capabilities")).json()
    assert caps["limits"]["max_prompt_chars"] == LIMIT
    params = (await client.get("/api/parameters")).json()
    assert params["limits"]["max_prompt_chars"] == LIMIT


async def test_the_library_api_gets_the_same_check(settings: Settings) -> None:
    async with SdrestService(settings, engine=FakeEngine()) as service:
        with pytest.raises(InvalidRequestError) as caught:
            await service.submit(ImgGenRequest(negative_prompt="x" * (LIMIT + 1)))
    assert caught.value.field == "negative_prompt"
