"""Helpers the unit tests share (and a few HTTP tests): model files written by hand, and a
local HTTP server for the image fetcher."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import math
import ssl
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from PIL import Image

from sdrest.net.addresses import IPAddress

# -- model files ------------------------------------------------------------------------------


def write_safetensors(
    path: Path,
    tensors: Mapping[str, Sequence[int]],
    metadata: Mapping[str, str] | None = None,
    dtype: str = "F16",
) -> Path:
    """A valid safetensors file; the data section is a sparse run of zeros (cheap at any shape)."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in tensors.items():
        nbytes = math.prod(shape) * 2
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def write_gguf(
    path: Path, tensors: Mapping[str, Sequence[int]], arch: str = "test", **kv: object
) -> Path:
    """A GGUF file written by the reference ``gguf`` writer (f32 zeros)."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=arch)
    for key, value in kv.items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
    for name, shape in tensors.items():
        writer.add_tensor(name, np.zeros(tuple(shape), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- a local HTTP server ----------------------------------------------------------------------

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def png_bytes(size: tuple[int, int] = (8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


PNG = png_bytes()


class LocalServer:
    """A tiny HTTP/1.0-style server: one response per connection, routes set per test."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[dict[str, str]] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *header_lines = head.strip().split("\r\n")
            path = line.split(" ")[1]
            headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
            self.requests.append({"path": path, **headers})
            handler = self.routes.get(path.split("?")[0], _not_found)
            await handler(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def respond(
    status: str, body: bytes = b"", headers: dict[str, str] | None = None, length: bool = True
) -> Handler:
    async def handler(writer: asyncio.StreamWriter) -> None:
        lines = [f"HTTP/1.1 {status}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if length:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return handler


def redirect(location: str, status: str = "302 Found") -> Handler:
    return respond(status, headers={"Location": location})


_not_found = respond("404 Not Found", b"nope")


def only_loopback(address: IPAddress) -> bool:
    return address == LOOPBACK
