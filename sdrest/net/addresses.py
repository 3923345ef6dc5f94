"""Which IP addresses an outbound fetch may reach: globally routable unicast only.

The policy is a table of named ranges checked in order, so a refusal can say *why* ("a private
address", "a cloud metadata address"). IPv6 forms that carry an IPv4 address inside (IPv4-mapped,
NAT64, 6to4) are judged by the address they carry: ``::ffff:127.0.0.1`` is loopback, whatever
the IPv6 tables say. Python's ``is_global`` alone is not enough on 3.11 (it calls multicast,
192.0.0.0/24, fec0::/10 and 2002::/16 global), hence the explicit table first.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]
"""True when a fetch may connect to the address."""

_V4: Final = ipaddress.IPv4Network
_V6: Final = ipaddress.IPv6Network

# Checked in order; the first range that holds the address names the reason.
_V4_BLOCKED: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.169.254/32"), "cloud metadata"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("192.0.0.0/24"), "special-purpose"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes the broadcast address
)
_V6_BLOCKED: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("2001::/32"), "Teredo tunnel"),  # the client address inside is obfuscated: refuse all
    (_V6("fd00:ec2::254/128"), "cloud metadata"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("100::/64"), "discard-only"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("::/8"), "reserved"),
)
_NAT64: Final = _V6("64:ff9b::/96")
_MAPPED: Final = _V6("::ffff:0:0/96")
_SIX_TO_FOUR: Final = _V6("2002::/16")


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (e.g. "private"); None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            reason = blocked_reason(inner)
            return None if reason is None else f"{reason} (IPv4 inside IPv6)"
        table: tuple[tuple[ipaddress.IPv4Network, str] | tuple[ipaddress.IPv6Network, str], ...]
        table = _V6_BLOCKED
    else:
        table = _V4_BLOCKED
    for network, reason in table:
        if address in network:
            return reason
    # Whatever else the IANA special-purpose registries mark as non-global.
    if not address.is_global or address.is_private or address.is_reserved:
        return "special-purpose"
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address reaches."""
    if address in _MAPPED:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def is_public_address(address: IPAddress) -> bool:
    """The default policy: only globally routable unicast addresses may be fetched from."""
    return blocked_reason(address) is None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names literally, or None for a host name.

    Besides canonical forms this catches what ``inet_aton`` (and therefore every resolver and
    browser) accepts: ``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1`` all mean 127.0.0.1.
    Treating them as literals means the policy sees the real address, not a "name".
    """
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    # inet_aton stops at whitespace and accepts trailing junk after it; callers reject
    # whitespace in URLs, and a host with letters beyond hex digits fails here.
    if not text or any(c not in "0123456789abcdefxABCDEFX." for c in text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


# Names that must never be fetched whatever a resolver says about them: loopback by definition,
# cloud metadata endpoints, and suffixes reserved for private networks.
_BLOCKED_NAMES: Final = frozenset({"localhost", "metadata", "metadata.google.internal"})
_BLOCKED_SUFFIXES: Final = (".localhost", ".internal", ".local", ".home.arpa", ".localdomain")


def blocked_name(host: str) -> bool:
    """True for host names that are local or metadata endpoints by name."""
    name = host.lower().rstrip(".")
    return name in _BLOCKED_NAMES or name.endswith(_BLOCKED_SUFFIXES)
