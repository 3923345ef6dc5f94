"""Bad input on EVERY route of every family (enumerated from the app): malformed JSON, wrong
types, hostile values, junk query strings and path parameters. Never a 500, always the family's
error shape. A route added later is covered automatically."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.support import all_routes, client_of, url
from tests.conftest import settings_in

pytestmark = pytest.mark.slow  # a property sweep over every route: scripts/test runs it

ROUTES = all_routes()

BODIES: list[bytes] = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"text"',
    b"\xff\xfe\x00garbage",
    b'{"prompt": 5, "width": "wide", "steps": -1, "seed": "x", "n": 1e400}',
    b'{"prompt": "x", "width": 99999999999999999999999, "height": -5}',
    b'{"model": "../../../etc/passwd", "model_name": "/etc/shadow", "job_id": "../x"}',
    b'{"image": "not base64!!", "init_images": ["AAAA"], "mask": 7, "url": "file:///etc"}',
    b'{"prompt": "' + b"A" * 200_000 + b'"}',
    b'{"a": {"b": {"c": {"d": {"e": [[[[[[[[[[]]]]]]]]]]}}}}}',
]
QUERIES = ["", "?wait=abc", "?limit=-1&page=zzz&sort_by=__class__", "?thumb=true&size=999999"]


@pytest.fixture
async def http(tmp_path: Path, models_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_in(tmp_path, models_dir, max_queue=3)
    async with client_of(settings, raise_app_exceptions=False) as client:
        yield client


def assert_clean(resp: httpx.Response, what: str) -> None:
    assert resp.status_code < 500 or resp.status_code == 501, (what, resp.status_code, resp.text)
    if resp.status_code >= 400 and resp.headers.get("content-type", "").startswith("application"):
        assert resp.json(), what  # a body that says what went wrong


async def test_malformed_bodies_and_queries_never_500(http: httpx.AsyncClient) -> None:
    for method, path in ROUTES:
        for query in QUERIES:
            target = url(path) + query
            if method == "GET":
                assert_clean(await http.get(target), f"GET {target}")
                continue
            for body in BODIES:
                resp = await http.request(
                    method, target, content=body, headers={"content-type": "application/json"}
                )
                assert_clean(resp, f"{method} {target} {body[:40]!r}")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segment=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and "?" not in s),
    route=st.sampled_from([r for r in ROUTES if "{" in r[1]]),
)
async def test_hostile_path_parameters_never_500(
    http: httpx.AsyncClient, segment: str, route: tuple[str, str]
) -> None:
    method, path = route
    segment = quote(segment, safe="")  # any text at all, as a client would send it
    target = path.replace("{job_id}", segment).replace("{filename}", segment)
    target = target.replace("{model_id}", segment).replace("{model}", segment)
    resp = await http.request(method, target, json={} if method == "POST" else None)
    assert_clean(resp, f"{method} {target!r}")


async def test_paths_no_family_matches_still_answer_json(http: httpx.AsyncClient) -> None:
    for path in ("/nowhere", "/api/queue/job/%0A/preview", "/sdapi/v1/%0A"):
        resp = await http.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"] == "application/json", path
        assert resp.json()["error"], path
