"""The image fetcher against a local HTTP server (no internet).

The server listens on 127.0.0.1, which the real policy refuses; the happy-path tests allow
exactly that one address through the injectable policy, so every redirect into another private
range (or another port on loopback is fine, but 127.0.0.2 is not) is still checked for real.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest

from sdrest.net.addresses import IPAddress
from sdrest.net.fetch import (
    RemoteImageTooLargeError,
    UrlFetchDisabledError,
    UrlFetchError,
    UrlFetchTimeoutError,
    UrlNotAllowedError,
    fetch_image,
    fetch_image_bytes,
)
from sdrest.settings import FetchSettings
from tests.unit.support import LOOPBACK, PNG, LocalServer, only_loopback, redirect, respond


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    srv = LocalServer()
    await srv.start()
    yield srv
    await srv.stop()


ON = FetchSettings(allow_url_images=True, fetch_timeout=5.0, fetch_max_redirects=3)


async def fetch(url: str, settings: FetchSettings = ON, max_bytes: int = 1 << 20) -> bytes:
    image = await fetch_image(url, settings, max_bytes=max_bytes, allow=only_loopback)
    return image.data


async def test_the_local_server_is_refused_by_the_default_policy(server: LocalServer) -> None:
    server.routes["/a.png"] = respond("200 OK", PNG)
    with pytest.raises(UrlNotAllowedError, match=r"127\.0\.0\.1: it is a loopback address"):
        await fetch_image_bytes(server.base + "/a.png", ON, max_bytes=1 << 20)
    assert server.requests == []  # refused before connecting


async def test_numeric_tricks_for_the_local_server_are_refused(server: LocalServer) -> None:
    server.routes["/a.png"] = respond("200 OK", PNG)
    for host in ("2130706433", "0x7f.1", "017700000001", "[::ffff:127.0.0.1]"):
        with pytest.raises(UrlNotAllowedError, match="loopback"):
            await fetch_image_bytes(f"http://{host}:{server.port}/a.png", ON, max_bytes=1 << 20)
    assert server.requests == []


async def test_disabled_setting_answers_403() -> None:
    with pytest.raises(UrlFetchDisabledError) as caught:
        off = FetchSettings(allow_url_images=False)
        await fetch_image_bytes("http://example.com/a.png", off, max_bytes=100)
    assert caught.value.status == 403
    assert "--allow-url-images" in caught.value.message


async def test_happy_path_returns_the_image_and_sends_the_original_host(
    server: LocalServer,
) -> None:
    server.routes["/a.png"] = respond("200 OK", PNG, {"Content-Type": "text/plain"})
    image = await fetch_image(
        server.base + "/a.png?x=1", ON, max_bytes=1 << 20, allow=only_loopback
    )
    assert image.data == PNG
    assert (image.format, image.width, image.height) == ("PNG", 8, 6)
    assert image.media_type == "image/png"
    sent = server.requests[0]
    assert sent["path"] == "/a.png?x=1"
    assert sent["host"] == f"127.0.0.1:{server.port}"
    assert sent["accept-encoding"] == "identity"


async def test_a_host_name_is_resolved_once_and_the_vetted_ip_is_used(
    server: LocalServer,
) -> None:
    server.routes["/a.png"] = respond("200 OK", PNG)
    lookups: list[str] = []

    async def fake_dns(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [LOOPBACK]

    image = await fetch_image(
        f"http://images.example:{server.port}/a.png",
        ON,
        max_bytes=1 << 20,
        allow=only_loopback,
        resolve=fake_dns,
    )
    assert image.data == PNG
    assert lookups == ["images.example"]  # one lookup: no rebinding window
    assert server.requests[0]["host"] == f"images.example:{server.port}"


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["10.0.0.7"], "private"),
        (["93.184.216.34", "192.168.0.10"], "private"),  # a mix: refused
        (["2606:4700::1111", "::1"], "loopback"),
        (["169.254.169.254"], "cloud metadata"),
    ],
)
async def test_names_resolving_to_any_private_address_are_refused(
    addresses: list[str], reason: str
) -> None:
    async def fake_dns(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in addresses]

    with pytest.raises(UrlNotAllowedError) as caught:
        await fetch_image("http://evil.example/a.png", ON, max_bytes=100, resolve=fake_dns)
    assert caught.value.message == (
        f"refusing to fetch from evil.example: it resolves to a {reason} address"
    )
    # The resolved internal address is not told to the caller.
    assert not any(a in caught.value.message for a in addresses)


async def test_redirects_are_followed_and_rechecked(server: LocalServer) -> None:
    server.routes["/start"] = redirect("/middle", "301 Moved Permanently")
    server.routes["/middle"] = redirect(server.base + "/a.png", "307 Temporary Redirect")
    server.routes["/a.png"] = respond("200 OK", PNG)
    assert await fetch(server.base + "/start") == PNG
    assert [r["path"] for r in server.requests] == ["/start", "/middle", "/a.png"]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://10.0.0.1/a.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://127.0.0.2/a.png", "loopback"),
        ("http://[::1]/a.png", "loopback"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "cloud metadata"),
    ],
)
async def test_redirect_into_a_private_range_is_refused_at_that_hop(
    server: LocalServer, location: str, reason: str
) -> None:
    server.routes["/start"] = redirect(server.base + "/hop")
    server.routes["/hop"] = redirect(location)
    with pytest.raises(UrlNotAllowedError, match=f"it is a {reason} address"):
        await fetch(server.base + "/start")
    assert [r["path"] for r in server.requests] == ["/start", "/hop"]


async def test_redirect_to_localhost_is_rechecked(server: LocalServer) -> None:
    # The redirect goes to a different port on the same host: the default policy refuses it
    # even though the first hop was allowed by a more lenient one (a per-hop check).
    server.routes["/start"] = redirect("http://localhost:1/a.png")
    with pytest.raises(UrlNotAllowedError, match="local host name localhost"):
        await fetch(server.base + "/start")


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://example.com/a.png", "http://u:p@example.com/"]
)
async def test_redirect_to_a_bad_scheme_or_credentials_is_refused(
    server: LocalServer, location: str
) -> None:
    server.routes["/start"] = redirect(location)
    with pytest.raises(UrlNotAllowedError):
        await fetch(server.base + "/start")


async def test_too_many_redirects(server: LocalServer) -> None:
    for i in range(5):
        server.routes[f"/r{i}"] = redirect(f"/r{i + 1}")
    server.routes["/r5"] = respond("200 OK", PNG)
    with pytest.raises(UrlFetchError, match=r"too many redirects \(more than 3\)"):
        await fetch(server.base + "/r0")
    assert len(server.requests) == 4  # the first request and 3 redirects
    settings = FetchSettings(allow_url_images=True, fetch_max_redirects=5)
    assert await fetch(server.base + "/r0", settings) == PNG


async def test_declared_oversize_is_refused_before_reading(server: LocalServer) -> None:
    server.routes["/big"] = respond("200 OK", b"", {"Content-Length": "999999999"}, length=False)
    with pytest.raises(RemoteImageTooLargeError) as caught:
        await fetch(server.base + "/big", max_bytes=1000)
    assert caught.value.status == 413


async def test_undeclared_oversize_body_stops_at_the_limit(server: LocalServer) -> None:
    server.routes["/big"] = respond("200 OK", PNG + b"\0" * 50_000, length=False)
    with pytest.raises(RemoteImageTooLargeError):
        await fetch(server.base + "/big", max_bytes=10_000)
    # Just under the limit is fine.
    server.routes["/ok"] = respond("200 OK", PNG, length=False)
    assert await fetch(server.base + "/ok", max_bytes=len(PNG)) == PNG


async def test_slow_server_times_out(server: LocalServer) -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3)

    server.routes["/slow"] = slow
    settings = FetchSettings(allow_url_images=True, fetch_timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UrlFetchTimeoutError) as caught:
        await fetch(server.base + "/slow", settings)
    assert loop.time() - started < 2
    assert caught.value.status == 400
    assert caught.value.code == "url_fetch_timeout"


async def test_non_image_body_is_refused(server: LocalServer) -> None:
    server.routes["/page"] = respond("200 OK", b"<html>hi</html>", {"Content-Type": "image/png"})
    with pytest.raises(UrlFetchError, match="did not return an image"):
        await fetch(server.base + "/page")


async def test_error_status_is_reported(server: LocalServer) -> None:
    with pytest.raises(UrlFetchError, match="answered HTTP 404"):
        await fetch(server.base + "/missing")


async def test_connection_refused_is_a_400() -> None:
    # A port nothing listens on (bound then closed).
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(UrlFetchError, match=r"could not connect to 127\.0\.0\.1"):
        await fetch(f"http://127.0.0.1:{port}/a.png")
