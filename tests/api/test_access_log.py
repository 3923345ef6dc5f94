"""One access line per request, whichever family serves it, with the route template, the status,
the duration and the request id the response names (``X-Request-ID``)."""

from __future__ import annotations

import httpx
import pytest

from sdrest.logs import ACCESS_LOGGER


async def test_one_access_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger=ACCESS_LOGGER)
    answers = [
        await client.get("/api/health"),
        await client.get("/sdcpp/v1/jobs/job_1_ab"),
        await client.post("/v1/images/generations", content=b"{oops"),
        await client.get("/ui/index.html"),
        await client.get("/nowhere"),
    ]
    lines = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == len(answers)
    expected = [
        ("GET", "/api/health", 200),
        ("GET", "/sdcpp/v1/jobs/{job_id}", 404),
        ("POST", "/v1/images/generations", 400),
        ("GET", "/ui/{path}", 200),
        ("GET", "unmatched", 404),
    ]
    for line, answer, (method, route, status) in zip(lines, answers, expected, strict=True):
        assert (line.method, line.route, line.status) == (method, route, status)  # type: ignore[attr-defined]
        assert answer.status_code == status
        assert line.request_id == answer.headers["x-request-id"]  # type: ignore[attr-defined]
        assert line.duration_ms >= 0  # type: ignore[attr-defined]
        assert line.path == answer.request.url.path  # type: ignore[attr-defined]


async def test_routes_are_named_as_the_router_picks_them(client: httpx.AsyncClient) -> None:
    """A wrong method is named by its route (405); a path a mount takes but none of its routes
    has is unmatched, even where an outer route has that path (the mount answers 404)."""
    assert (await client.delete("/sdcpp/v1/jobs/job_1_ab")).status_code == 405
    assert (await client.delete("/api/health")).status_code == 404
    scraped = (await client.get("/metrics")).text
    assert 'method="DELETE",route="/sdcpp/v1/jobs/{job_id}",status="405"' in scraped
    assert 'method="DELETE",route="unmatched",status="404"' in scraped
