"""``GET /openapi.json``: a valid OpenAPI 3.1 document of every route, and schemathesis over it.

Every operation of the document is fuzzed with schemathesis (positive and negative data; image
fields also get real small images, see ``fuzzing_document``) against
``create_app(service)`` on the fake engine, through httpx's ASGI transport in the test's own
event loop (the service's loop). No response may be a 5xx (501 is the honest "not implemented"
of ``vid_gen`` and ``controlnet``) and no exception may escape the app.
"""

from __future__ import annotations

import base64
import copy
import functools
import io
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.applications import Starlette
from starlette.responses import Response

from sdrest.api import openapi
from sdrest.api.openapi import build_openapi, http_routes
from sdrest.api.routing import NoBody
from sdrest.app import create_app
from sdrest.service import SdrestService
from tests.api.support import PUBLIC, all_routes
from tests.conftest import settings_in
from tests.fakes import FakeEngine

MAX_EXAMPLES = 25
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "501"]}}}
)


def unstarted_app() -> Starlette:
    """The app over a service that is never started (nothing is created on disk)."""
    return create_app(settings_in(Path("/nonexistent"), Path("/nonexistent/models")))


IMAGE_FIELDS = frozenset(
    {"image", "data", "mask", "init_image", "source_image", "mask_image", "control_image"}
    | {"ref_images", "init_images", "extra_images"}
)
"""Body fields that carry a base64 image (or a data URL)."""
IMAGE_FORMAT = "sdrest-image"


@st.composite
def encoded_images(draw: st.DrawFn) -> str:
    """A small real image, base64 or as a data URL, in a format and mode clients send."""
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    image = Image.new(draw(st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1"])), size)
    fmt = draw(st.sampled_from(["PNG", "JPEG", "WEBP", "GIF"]))
    if fmt in ("JPEG", "WEBP") and image.mode not in ("RGB", "L"):
        image = image.convert("RGBA" if fmt == "WEBP" and "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    text = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{fmt.lower()};base64,{text}" if draw(st.booleans()) else text


def _with_image_format(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _with_image_format(value) for key, value in node.items()}
        return {**node, "format": IMAGE_FORMAT} if node.get("type") == "string" else node
    if isinstance(node, list):
        return [_with_image_format(item) for item in node]
    return node


def fuzzing_document(document: dict[str, Any]) -> dict[str, Any]:
    """The served document with a test-only hint on image fields (``format: sdrest-image``), so
    generated bodies also carry real images and reach past image decoding."""
    fuzzed = copy.deepcopy(document)
    for schema in fuzzed["components"]["schemas"].values():
        for name, prop in schema.get("properties", {}).items():
            if name in IMAGE_FIELDS:
                schema["properties"][name] = _with_image_format(prop)
    return fuzzed


schemathesis.openapi.format(IMAGE_FORMAT, encoded_images() | st.text(max_size=8))
DOCUMENT = build_openapi(unstarted_app())
SCHEMA: OpenApiSchema = schemathesis.openapi.from_dict(fuzzing_document(DOCUMENT), config=CONFIG)
OPERATIONS = sorted((m.upper(), path) for path, ops in DOCUMENT["paths"].items() for m in ops)


@functools.cache
def strategy(method: str, path: str) -> st.SearchStrategy[schemathesis.Case[Any]]:
    """Positive and negative cases of one operation (negative only where there is input).

    The multipart body (OpenAI edits) gets positive cases only: schemathesis 4.32's negative
    mutation of a form with binary parts fails inside the generator ("Unsupported type:
    'Binary'"), a schemathesis bug, not a finding.
    """
    operation = SCHEMA[path][method]
    modes = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    declared = DOCUMENT["paths"][path][method.lower()]
    multipart = "multipart/form-data" in declared.get("requestBody", {}).get("content", {})
    if ("parameters" in declared or "requestBody" in declared) and not multipart:
        modes.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    return st.one_of(modes)


def encoded(case: schemathesis.Case[Any]) -> dict[str, Any]:
    """The case as ``httpx.AsyncClient.request`` arguments. Schemathesis serializes a case for
    ``requests``; ``requests`` encodes it (query, cookies, JSON, multipart) exactly as it would
    go on the wire, and httpx carries those bytes through the ASGI transport."""
    prepared = requests.Request(**case.as_transport_kwargs(base_url="http://test")).prepare()
    body = prepared.body
    return {
        "method": prepared.method,
        "url": prepared.url,
        "headers": dict(prepared.headers),
        "content": body.encode() if isinstance(body, str) else body,
    }


# -- the document ------------------------------------------------------------------------------


async def test_document_is_built_on_first_use_then_cached(
    service: SdrestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Public whatever the auth mode: tests/api/support.py lists it in PUBLIC.
    builds: list[object] = []

    def counting_build(app: Starlette) -> dict[str, Any]:
        builds.append(app)
        return build_openapi(app)

    monkeypatch.setattr(openapi, "build_openapi", counting_build)
    app = create_app(service)
    assert builds == []  # nothing is built at start-up
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.get("/openapi.json")
        second = await client.get("/openapi.json")
    assert builds == [app]
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert first.json() == msgspec.json.decode(msgspec.json.encode(DOCUMENT))
    assert second.content == first.content


def test_schemathesis_loads_the_served_document(tmp_path: Path, models_dir: Path) -> None:
    # The service is never started: serving the document needs none, and schemathesis runs the
    # app in its own event loop.
    service = SdrestService(settings_in(tmp_path, models_dir), engine=FakeEngine())
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service), config=CONFIG)
    assert schema.raw_schema["openapi"] == "3.1.0"
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    labels = {result.ok().label for result in results if isinstance(result, Ok)}
    # Schemathesis leaves out the operation serving the document it was loaded from.
    assert labels == {f"{m} {p}" for m, p in OPERATIONS} - {"GET /openapi.json"}


def test_every_route_is_an_operation_with_its_methods() -> None:
    assert set(all_routes()) <= set(OPERATIONS) | {("GET", "/openapi.json")}
    assert sorted(http_routes(unstarted_app())) == OPERATIONS
    assert ("GET", "/openapi.json") in OPERATIONS
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            assert operation["tags"] and operation["responses"], (method, path)
            for name in (p[1:-1] for p in path.split("/") if p.startswith("{")):
                params = {p["name"]: p for p in operation["parameters"] if p["in"] == "path"}
                assert params[name]["schema"] == {"type": "string"}, (method, path, name)


def test_every_post_route_declares_its_body() -> None:
    specs = {(op.method, op.path): op.spec for op in openapi.operations(unstarted_app())}
    posts = [route for route in OPERATIONS if route[0] == "POST"]
    for method, path in posts:
        spec = specs[(method, path)]
        assert spec is not None and spec.body is not None, (method, path)
        has_body = "requestBody" in DOCUMENT["paths"][path][method.lower()]
        assert has_body != isinstance(spec.body, NoBody), path


def test_every_success_answer_has_a_schema() -> None:
    """Every 2xx documents its body: a JSON answer by its msgspec type, others by media type."""
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if not status.startswith("2"):
                    continue
                assert answer["content"], (method, path)
                for media_type, content in answer["content"].items():
                    assert content["schema"], (method, path, media_type)
    answer = DOCUMENT["paths"]["/sdcpp/v1/jobs/{job_id}"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/JobDocument"}
    assert "progress" in DOCUMENT["components"]["schemas"]["JobDocument"]["properties"]


def test_a_route_without_a_declared_contract_is_refused() -> None:
    app = unstarted_app()
    app.add_route("/new-thing", lambda request: Response(), methods=["POST"])
    with pytest.raises(LookupError, match="/new-thing"):
        build_openapi(app)


def test_bodies_queries_security_and_errors_are_declared() -> None:
    paths = DOCUMENT["paths"]
    schemas = DOCUMENT["components"]["schemas"]
    img_gen = paths["/sdcpp/v1/img_gen"]["post"]["requestBody"]["content"]["application/json"]
    assert img_gen["schema"] == {"$ref": "#/components/schemas/ImgGenRequest"}
    assert "sample_params" in schemas["ImgGenRequest"]["properties"]
    refs = _refs(DOCUMENT)
    assert refs and all(r.removeprefix("#/components/schemas/") in schemas for r in refs), refs
    edit = paths["/v1/images/edits"]["post"]["requestBody"]["content"]["multipart/form-data"]
    props = edit["schema"]["properties"]
    assert props["image"]["format"] == "binary" and props["image[]"]["type"] == "array"
    assert {"prompt", "strength", "edit_mode", "mask"} <= set(props)
    wait = paths["/sdcpp/v1/jobs/{job_id}"]["get"]["parameters"]
    assert {"name": "wait", "in": "query"}.items() <= wait[1].items()
    assert set(DOCUMENT["components"]["securitySchemes"]) == {"bearer", "apiKey", "basic"}
    public = {
        (m.upper(), p)
        for p, ops in paths.items()
        for m, op in ops.items()
        if op.get("security") == []
    }
    assert public == PUBLIC
    errors = {
        "/sdcpp/v1/img_gen": ["SdcppError"],
        "/v1/images/generations": ["OpenAIError"],
        "/sdapi/v1/txt2img": ["A1111Error", "A1111ValidationError"],
        "/api/generate/text2img": ["RestError"],
    }
    for path, names in errors.items():
        shape = paths[path]["post"]["responses"]["4XX"]["content"]["application/json"]["schema"]
        expected = [{"$ref": f"#/components/schemas/{name}"} for name in names]
        assert shape == (expected[0] if len(expected) == 1 else {"anyOf": expected})
    rest_error = schemas["RestErrorDetail"]["properties"]
    assert {"message", "code", "status_code", "request_id", "timestamp"} <= set(rest_error)
    assert {t["name"] for t in DOCUMENT["tags"]} == {"sdcpp", "openai", "a1111", "rest", "server"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


# -- schemathesis over every operation ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_schemathesis_no_server_errors(
    client: httpx.AsyncClient, method: str, path: str, data: st.DataObject
) -> None:
    case = data.draw(strategy(method, path))
    # conftest's client: create_app(service) on the fake engine, in this test's event loop; an
    # exception escaping the app is raised here (httpx's raise_app_exceptions).
    response = await client.request(**encoded(case))
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500 or response.status_code == 501, response.text
