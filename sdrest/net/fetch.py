"""Fetch an image from a URL without ever reaching loopback, private, link-local or metadata
addresses (checked after DNS resolution and again on every redirect hop).

How the check is made to stick (no time-of-check/time-of-use gap, no DNS rebinding): the host is
resolved once, here, with the loop's non-blocking ``getaddrinfo``; *every* address it returns
must pass the policy; then the request goes to the vetted IP itself (the URL handed to httpx
names the IP, so httpx never resolves anything) while the ``Host`` header carries the original
name and, for https, the ``sni_hostname`` request extension makes httpcore send that name as SNI
and verify the certificate against it. Redirects are followed by hand so every hop goes through
the same checks. The client ignores proxy environment variables (a proxy would resolve the name
itself and undo the pinning).
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urljoin

import httpx
import msgspec
from PIL import Image

from sdrest.images import INPUT_FORMATS
from sdrest.net.addresses import AddressPolicy, IPAddress, blocked_reason, is_public_address
from sdrest.net.urls import (
    RemoteImageTooLargeError,
    Target,
    UrlFetchDisabledError,
    UrlFetchError,
    UrlFetchTimeoutError,
    UrlNotAllowedError,
    parse_target,
)
from sdrest.settings import FetchSettings
from sdrest.units import format_bytes

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Host name and port -> every address the name resolves to."""

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_HEADERS: Final = {
    "User-Agent": "sdrest-image-fetch",
    "Accept": "image/png,image/jpeg,image/webp,image/*;q=0.8",
    # Identity: the byte limit then bounds what crosses the wire *and* what is kept.
    "Accept-Encoding": "identity",
}


class FetchedImage(msgspec.Struct, frozen=True, kw_only=True):
    """An image body and what Pillow recognised in it (the server's Content-Type is not trusted)."""

    data: bytes
    format: str
    """Pillow's format name: PNG, JPEG, WEBP, GIF, BMP or TIFF."""
    width: int
    height: int

    @property
    def media_type(self) -> str:
        """The HTTP content type of the format."""
        return Image.MIME.get(self.format, "application/octet-stream")


async def fetch_image_bytes(url: str, settings: FetchSettings, *, max_bytes: int) -> bytes:
    """The body of ``url`` (http/https only), at most ``max_bytes``; 4xx SdrestErrors otherwise.

    403 when the server has URL fetching off; 400 for a refused or failed fetch (including a
    body that is not an image, and a timeout: code ``url_fetch_timeout``); 413 when too large.
    """
    return (await fetch_image(url, settings, max_bytes=max_bytes)).data


async def fetch_image(
    url: str,
    settings: FetchSettings,
    *,
    max_bytes: int,
    allow: AddressPolicy = is_public_address,
    resolve: Resolver | None = None,
    verify: ssl.SSLContext | None = None,
) -> FetchedImage:
    """Like :func:`fetch_image_bytes`, with the image's format and size.

    ``allow``, ``resolve`` and ``verify`` exist for tests (a local server, a fake DNS, a test
    CA); production code keeps the defaults: public addresses only, the system resolver, the
    certifi CA bundle.
    """
    if not settings.allow_url_images:
        raise UrlFetchDisabledError(
            "fetching images from URLs is disabled on this server (start it with"
            " --allow-url-images)",
            field="url",
        )
    data = await fetch_url_bytes(
        url,
        max_bytes=max_bytes,
        timeout=settings.fetch_timeout,
        max_redirects=settings.fetch_max_redirects,
        allow=allow,
        resolve=resolve or resolve_host,
        verify=verify,
    )
    return await asyncio.to_thread(identify_image, data)


def identify_image(data: bytes) -> FetchedImage:
    """Check that ``data`` is an image of an accepted format (header only, pixels not loaded)."""
    try:
        with Image.open(io.BytesIO(data), formats=INPUT_FORMATS) as image:
            fmt, (width, height) = image.format or "", image.size
    except Exception as exc:  # any decoder failure: the remote body is not a usable image
        raise UrlFetchError(
            "the URL did not return an image (PNG, JPEG, WebP, GIF, BMP or TIFF expected)",
            field="url",
        ) from exc
    if width <= 0 or height <= 0:
        raise UrlFetchError("the URL returned an empty image", field="url")
    return FetchedImage(data=data, format=fmt, width=width, height=height)


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, through the loop's non-blocking getaddrinfo."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlFetchError(f"could not resolve {host}", field="url") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_sockaddr(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def parse_sockaddr(text: str) -> IPAddress:
    """The address of a getaddrinfo result (an IPv6 zone suffix dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


async def fetch_url_bytes(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    max_redirects: int,
    allow: AddressPolicy = is_public_address,
    resolve: Resolver = resolve_host,
    verify: ssl.SSLContext | None = None,
) -> bytes:
    """The body of a 200 answer from ``url``, every hop checked; see the module docstring."""
    try:
        async with asyncio.timeout(timeout):
            return await _follow(url, max_bytes, timeout, max_redirects, allow, resolve, verify)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise UrlFetchTimeoutError(
            f"the URL did not answer within {timeout:g} s", field="url"
        ) from exc


async def _follow(
    url: str,
    max_bytes: int,
    timeout: float,
    max_redirects: int,
    allow: AddressPolicy,
    resolve: Resolver,
    verify: ssl.SSLContext | None,
) -> bytes:
    if verify is None:
        # Loading the CA bundle takes ~16 ms of CPU: build the context off the event loop.
        verify = await asyncio.to_thread(httpx.create_ssl_context)
    # trust_env=False: no proxies or netrc from the environment (see the module docstring).
    async with httpx.AsyncClient(
        trust_env=False, follow_redirects=False, timeout=timeout, verify=verify
    ) as client:
        current = url
        for _hop in range(max_redirects + 1):
            target = parse_target(current)
            addresses = await vetted_addresses(target, allow, resolve)
            body, location = await _get(client, target, addresses, max_bytes)
            if location is None:
                return body
            current = urljoin(current, location)
        raise UrlFetchError(f"too many redirects (more than {max_redirects})", field="url")


async def vetted_addresses(
    target: Target, allow: AddressPolicy, resolve: Resolver
) -> list[IPAddress]:
    """The addresses to connect to; a 400 if any address of the host is refused by ``allow``.

    All of them, not just the first: a name that resolves to one public and one private address
    could otherwise be steered to the private one.
    """
    if target.literal is not None:
        addresses = [target.literal]
    else:
        addresses = await resolve(target.host, target.port)
        if not addresses:
            raise UrlFetchError(f"could not resolve {target.host}", field="url")
    for address in addresses:
        if not allow(address):
            reason = blocked_reason(address) or "disallowed"
            log.info("refused fetch from %s (%s): %s address", target.host, address, reason)
            # The address is shown only when the caller wrote it: what a name resolves to
            # inside this server's network is not the caller's business.
            if target.literal is not None:
                message = f"refusing to fetch from {address}: it is a {reason} address"
            else:
                message = f"refusing to fetch from {target.host}: it resolves to a {reason} address"
            raise UrlNotAllowedError(message, field="url")
    return addresses


def _pinned_url(target: Target, address: IPAddress) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{target.scheme}://{host}:{target.port}{target.path}"


async def _get(
    client: httpx.AsyncClient, target: Target, addresses: list[IPAddress], max_bytes: int
) -> tuple[bytes, str | None]:
    """(body, None) for a 200, (b"", location) for a redirect; the next vetted address is tried
    only when connecting fails."""
    extensions = {"sni_hostname": target.host} if target.literal is None else {}
    headers = {**_HEADERS, "Host": target.host_header}
    for address in addresses:
        request = client.build_request(
            "GET", _pinned_url(target, address), headers=headers, extensions=extensions
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            if _tls_failure(exc):  # every address of the name presents the same certificate
                log.info("TLS with %s at %s failed: %s", target.host, address, exc)
                raise UrlFetchError(
                    f"TLS handshake with {target.host} failed (certificate not valid for it?)",
                    field="url",
                ) from exc
            log.info("could not connect to %s at %s", target.host, address)
            continue
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            log.info("fetch from %s failed: %s", target.host, exc)
            raise UrlFetchError(f"fetching from {target.host} failed", field="url") from exc
        try:
            return await _read(response, target, max_bytes)
        finally:
            await response.aclose()
    raise UrlFetchError(f"could not connect to {target.host}", field="url")


async def _read(
    response: httpx.Response, target: Target, max_bytes: int
) -> tuple[bytes, str | None]:
    if response.status_code in _REDIRECTS:
        location = response.headers.get("location")
        if not location:
            raise UrlFetchError("the URL redirected without a Location", field="url")
        return b"", location
    if response.status_code != 200:
        raise UrlFetchError(f"the URL answered HTTP {response.status_code}", field="url")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RemoteImageTooLargeError(_too_large(max_bytes), field="url")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise RemoteImageTooLargeError(_too_large(max_bytes), field="url")
            chunks.append(chunk)
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        log.info("reading from %s failed: %s", target.host, exc)
        raise UrlFetchError(f"reading from {target.host} failed", field="url") from exc
    return b"".join(chunks), None


def _tls_failure(exc: BaseException) -> bool:
    """True when an httpx connect error comes from TLS (httpx and httpcore chain the cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _too_large(max_bytes: int) -> str:
    return f"the image at the URL is larger than {format_bytes(max_bytes)}"


__all__ = [
    "FetchedImage",
    "RemoteImageTooLargeError",
    "Resolver",
    "UrlFetchDisabledError",
    "UrlFetchError",
    "UrlFetchTimeoutError",
    "UrlNotAllowedError",
    "fetch_image",
    "fetch_image_bytes",
    "fetch_url_bytes",
    "identify_image",
    "resolve_host",
    "vetted_addresses",
]
