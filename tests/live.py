"""A real uvicorn server in a background thread, for the real client packages (openai, webuiapi,
websockets) that need a TCP socket. One process: the native library is loaded once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from sdrest.app import create_app
from sdrest.settings import Settings


class LiveServer:
    """A started server: ``url`` is its base URL, ``app`` the Starlette app it serves."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    @property
    def service(self):  # type: ignore[no-untyped-def]
        """The server's SdrestService (for assertions; touch it only from the server's loop)."""
        return self.app.state.service

    def start(self, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """Run a server for the duration of the block."""
    server = LiveServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
