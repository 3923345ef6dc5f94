"""What the benchmark and soak scripts share: a free local port and a JSON call over HTTP
(urllib: the client side adds nothing to what is measured)."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    method: str, url: str, body: dict[str, Any] | None = None, *, timeout: float = 120
) -> dict[str, Any]:
    """One JSON request; the decoded JSON answer (an HTTP error raises ``HTTPError``)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]
