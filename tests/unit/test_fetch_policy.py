"""The address policy and URL checks of the image fetcher (no network)."""

from __future__ import annotations

import ipaddress

import pytest

from sdrest.net.addresses import (
    IPAddress,
    blocked_name,
    blocked_reason,
    is_public_address,
    parse_ip_literal,
)
from sdrest.net.fetch import UrlFetchError, resolve_host, vetted_addresses
from sdrest.net.urls import UrlNotAllowedError, parse_target

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.100.100.200", "carrier-grade NAT"),  # Alibaba's metadata service lives there
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.8", "special-purpose"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("::ffff:127.0.0.1", "loopback (IPv4 inside IPv6)"),
    ("::ffff:10.1.2.3", "private (IPv4 inside IPv6)"),
    ("::ffff:169.254.169.254", "cloud metadata (IPv4 inside IPv6)"),
    ("64:ff9b::7f00:1", "loopback (IPv4 inside IPv6)"),  # NAT64 of 127.0.0.1
    ("64:ff9b::a00:1", "private (IPv4 inside IPv6)"),  # NAT64 of 10.0.0.1
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("2002:7f00:1::1", "loopback (IPv4 inside IPv6)"),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private (IPv4 inside IPv6)"),  # 6to4 of 192.168.1.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo tunnel"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fc00::1", "unique local (private)"),
    ("fd12:3456::1", "unique local (private)"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("::7f00:1", "IPv4-compatible (deprecated)"),
    ("100::1", "discard-only"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",  # just past 172.16/12
    "100.128.0.1",  # just past 100.64/10
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8: fine on an IPv6-only network
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("text", "reason"), BLOCKED)
def test_non_public_addresses_are_refused_with_their_reason(text: str, reason: str) -> None:
    address = ipaddress.ip_address(text)
    assert blocked_reason(address) == reason
    assert not is_public_address(address)


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_allowed(text: str) -> None:
    assert blocked_reason(ipaddress.ip_address(text)) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f.1", "127.0.0.1"),  # hex, short form
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),  # octal
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_numeric_host_tricks_are_read_as_the_address_they_mean(host: str, expected: str) -> None:
    assert parse_ip_literal(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("host", ["example.com", "0x7f.example", "deadbeef.com", "a.b", ""])
def test_host_names_are_not_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST.", "foo.localhost", "metadata.google.internal", "printer.local",
     "metadata", "x.home.arpa", "localhost.localdomain"],
)  # fmt: skip
def test_local_names_are_blocked_by_name(host: str) -> None:
    assert blocked_name(host)


def test_ordinary_names_are_not_blocked_by_name() -> None:
    assert not blocked_name("example.com")
    assert not blocked_name("internal.example.com")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/a.png", "only http and https"),
        ("gopher://example.com:70/_", "only http and https"),
        ("data:image/png;base64,AAAA", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("//example.com/a.png", "without a scheme"),
        ("example.com/a.png", "without a scheme"),
        ("http://user:pass@example.com/a.png", "credentials"),
        ("http://user@example.com/a.png", "credentials"),
        ("http://example.com@127.0.0.1/", "credentials"),
        ("http://127.0.0.1#@example.com/", "it is a loopback address"),
        ("http://exa mple.com/", "spaces"),
        ("http://example.com/\r\nHost: evil", "control characters"),
        ("http://example.com\\@127.0.0.1/", "backslashes"),
        ("http:///a.png", "no host"),
        ("http://localhost:8080/", "local host name"),
        ("http://metadata.google.internal/computeMetadata/v1/", "local host name"),
        ("http://example.com:99999/", "malformed"),
        ("http://example.com:0/", "port 0"),
        ("http://[::1/", "malformed"),
        ("http://exa$mple.com/", "not a valid host name"),
        ("http://" + "a" * 5000 + ".com/", "longer than"),
    ],
)
async def test_bad_urls_are_refused_before_any_lookup(url: str, message: str) -> None:
    async def no_dns(host: str, port: int) -> list[IPAddress]:
        raise AssertionError("no lookup expected")

    with pytest.raises(UrlNotAllowedError) as caught:
        await vetted_addresses(parse_target(url), is_public_address, no_dns)
    assert message in caught.value.message
    assert caught.value.status == 400
    assert caught.value.field == "url"


def test_target_keeps_host_header_path_and_query_and_drops_the_fragment() -> None:
    target = parse_target("HTTPS://Example.COM:8443/a/b.png?x=1&y=%20#frag")
    assert (target.scheme, target.host, target.port) == ("https", "example.com", 8443)
    assert target.path == "/a/b.png?x=1&y=%20"
    assert target.host_header == "example.com:8443"
    assert target.literal is None


def test_target_defaults_and_literals() -> None:
    assert parse_target("http://example.com").path == "/"
    assert parse_target("http://example.com/").host_header == "example.com"
    target = parse_target("http://0x7f.1:8080/x")
    assert target.literal == ipaddress.ip_address("127.0.0.1")
    assert target.host == "127.0.0.1"
    v6 = parse_target("http://[2606:4700::1111]:8080/")
    assert v6.host_header == "[2606:4700::1111]:8080"


def test_idna_hosts_are_encoded() -> None:
    assert parse_target("http://bücher.example/").host == "xn--bcher-kva.example"


def test_fragment_is_not_part_of_the_host() -> None:
    target = parse_target("http://example.com#@127.0.0.1/")
    assert (target.host, target.path) == ("example.com", "/")


async def test_system_resolver_returns_every_address_once() -> None:
    addresses = await resolve_host("localhost", 80)  # /etc/hosts: no network needed
    assert addresses
    assert all(a.is_loopback for a in addresses)
    assert len(set(addresses)) == len(addresses)


async def test_resolver_failure_is_a_400(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import socket

    async def fail(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fail)
    with pytest.raises(UrlFetchError, match=r"could not resolve nowhere\.example"):
        await resolve_host("nowhere.example", 80)
