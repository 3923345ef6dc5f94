"""https through the pinned address: SNI and certificate checks use the URL's host name.

A throwaway CA and server certificate are made with ``cryptography`` (an authlib dependency);
the server listens on 127.0.0.1 and a fake resolver sends ``images.example`` there.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sdrest.net.addresses import IPAddress
from sdrest.net.fetch import UrlFetchError, fetch_image
from sdrest.settings import FetchSettings
from tests.unit.support import LOOPBACK, PNG, LocalServer, only_loopback, respond

ON = FetchSettings(allow_url_images=True, fetch_timeout=5.0)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(tmp: Path, host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context for ``host``, client context trusting only the test CA)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("sdrest test CA"))
        .issuer_name(_name("sdrest test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "server.pem", tmp / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


class TlsServer(LocalServer):
    def __init__(self) -> None:
        super().__init__()
        self.sni: list[str | None] = []


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[tuple[TlsServer, ssl.SSLContext]]:
    server_ctx, client_ctx = make_pki(tmp_path, "images.example")
    srv = TlsServer()

    def record_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        srv.sni.append(name)

    server_ctx.sni_callback = record_sni
    await srv.start(server_ctx)
    yield srv, client_ctx
    await srv.stop()


async def to_loopback(host: str, port: int) -> list[IPAddress]:
    return [LOOPBACK]


async def test_https_to_the_pinned_ip_sends_sni_and_checks_the_name(
    tls: tuple[TlsServer, ssl.SSLContext],
) -> None:
    server, client_ctx = tls
    server.routes["/a.png"] = respond("200 OK", PNG)
    image = await fetch_image(
        f"https://images.example:{server.port}/a.png",
        ON,
        max_bytes=1 << 20,
        allow=only_loopback,
        resolve=to_loopback,
        verify=client_ctx,
    )
    assert image.data == PNG
    assert server.sni == ["images.example"]
    assert server.requests[0]["host"] == f"images.example:{server.port}"


async def test_https_certificate_for_another_name_is_refused(
    tls: tuple[TlsServer, ssl.SSLContext],
) -> None:
    server, client_ctx = tls
    server.routes["/a.png"] = respond("200 OK", PNG)
    with pytest.raises(UrlFetchError, match=r"TLS handshake with other\.example failed"):
        await fetch_image(
            f"https://other.example:{server.port}/a.png",
            ON,
            max_bytes=1 << 20,
            allow=only_loopback,
            resolve=to_loopback,
            verify=client_ctx,
        )
    assert server.requests == []


async def test_https_ip_literal_verifies_against_the_ip(
    tls: tuple[TlsServer, ssl.SSLContext],
) -> None:
    server, client_ctx = tls  # the certificate names images.example, not 127.0.0.1
    with pytest.raises(UrlFetchError, match=r"TLS handshake with 127\.0\.0\.1 failed"):
        await fetch_image(
            f"https://127.0.0.1:{server.port}/a.png",
            ON,
            max_bytes=1 << 20,
            allow=lambda a: a == ipaddress.ip_address("127.0.0.1"),
            verify=client_ctx,
        )
