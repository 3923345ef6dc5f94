"""Real servers for tests: a uvicorn server in a background thread, for the real client packages
(openai, webuiapi, websockets) that need a TCP socket (one process: the native library is loaded
once), and ``sdrest serve`` as a process of its own."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from sdrest.app import create_app
from sdrest.engine.base import Engine
from sdrest.settings import Settings
from sdrest.testing import TinyModelSet


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """A started server: ``url`` is its base URL, ``app`` the Starlette app it serves."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, engine=engine)
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
def live_server(settings: Settings, engine: Engine | None = None) -> Iterator[LiveServer]:
    """Run a server for the duration of the block (over ``engine`` when given, e.g. the fake
    one for pure HTTP behaviour)."""
    server = LiveServer(settings, engine)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serve_process(
    sdrest: Sequence[str],
    models: TinyModelSet,
    data_dir: Path,
    cwd: Path | None = None,
    extra: Sequence[str] = (),
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``<sdrest> serve`` on the tiny models until healthy; kill it at the end of the block.

    ``sdrest`` is the command that starts the CLI (``[python, "-m", "sdrest"]`` or an installed
    ``sdrest`` script); ``extra`` are more flags. Yields the process and its base URL; its output
    goes to the log file ``server-<port>.log`` beside ``data_dir``.
    """
    port = free_port()
    log = (data_dir.parent / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            *sdrest,
            "serve",
            "--models-dir",
            str(models.root),
            "--data-dir",
            str(data_dir),
            "--model",
            "tiny-flux2",
            "--threads",
            "2",
            "--preview",
            "none",
            "--no-preload",  # a cold engine, as the tests expect; ``extra`` may say --preload
            "--port",
            str(port),
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the server exited while starting"
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
