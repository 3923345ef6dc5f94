"""Checking a URL before anything is fetched from it, and the errors a fetch can end in."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import msgspec

from sdrest.errors import ForbiddenError, InvalidRequestError, SdrestError
from sdrest.net.addresses import IPAddress, blocked_name, parse_ip_literal

MAX_URL_LENGTH: Final = 4096
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# What a DNS host name may hold once IDNA-encoded; anything else never reaches a header.
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")


class UrlNotAllowedError(InvalidRequestError):
    """The URL may not be fetched: scheme, credentials, or a non-public address (400)."""

    code = "url_not_allowed"


class UrlFetchError(InvalidRequestError):
    """The URL could not be fetched or did not hold an image (400)."""

    code = "url_fetch_failed"


class UrlFetchTimeoutError(UrlFetchError):
    """The remote server did not answer within ``fetch_timeout`` (400, code url_fetch_timeout).

    A 400 and not a 504: the caller chose the URL, and generic clients treat 5xx as "the
    server is broken" and retry, which would only repeat the slow fetch.
    """

    code = "url_fetch_timeout"


class UrlFetchDisabledError(ForbiddenError):
    """URL fetching is off on this server (403)."""

    code = "url_fetch_disabled"


class RemoteImageTooLargeError(SdrestError):
    """The remote body is larger than allowed (413)."""

    status = 413
    code = "payload_too_large"


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """One checked hop: where to connect and what to say in Host and SNI."""

    scheme: str
    host: str
    """IDNA-encoded lower-case host name, or the IP literal without brackets."""
    port: int
    path: str
    """Path and query, as sent on the request line."""
    literal: IPAddress | None
    """The address when the URL names one (no DNS lookup then)."""

    @property
    def host_header(self) -> str:
        """The Host header the server expects: the URL's host, with the port if not default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


def parse_target(url: str) -> Target:
    """Check a URL's form (not yet its addresses); a 400 naming the problem otherwise."""
    _check_characters(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowedError(f"malformed URL ({exc})", field="url") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = f"{scheme}:" if scheme else "a URL without a scheme"
        raise UrlNotAllowedError(
            f"only http and https URLs can be fetched, not {shown}", field="url"
        )
    if "@" in parts.netloc:
        raise UrlNotAllowedError("credentials in URLs are not allowed", field="url")
    host = _host(parts.hostname or "")
    if port == 0:
        raise UrlNotAllowedError("port 0 is not a valid port", field="url")
    literal = parse_ip_literal(host)
    if literal is None and ":" in host:
        raise UrlNotAllowedError("URL host is not a valid IPv6 address", field="url")
    if literal is not None:
        host = str(literal)  # canonical: 0x7f.1 is 127.0.0.1 from here on
    elif blocked_name(host):
        raise UrlNotAllowedError(f"refusing to fetch from the local host name {host}", field="url")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        scheme=scheme,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        path=path,
        literal=literal,
    )


def _check_characters(url: str) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise UrlNotAllowedError(f"URL longer than {MAX_URL_LENGTH} characters", field="url")
    # Control characters, spaces and backslashes are where parsers disagree with each other.
    if any(ord(c) <= 0x20 or c in "\x7f\\" for c in url):
        raise UrlNotAllowedError("URL holds spaces, control characters or backslashes", field="url")


def _host(raw: str) -> str:
    if not raw:
        raise UrlNotAllowedError("URL has no host", field="url")
    if ":" in raw:  # an IPv6 literal (urlsplit took the brackets off); zone ids included
        return raw
    try:
        ascii_host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UrlNotAllowedError("URL host is not a valid host name", field="url") from exc
    if not set(ascii_host) <= _HOST_CHARS or ascii_host.strip(".") == "":
        raise UrlNotAllowedError("URL host is not a valid host name", field="url")
    return ascii_host
