"""``sdrest serve`` as a process against slow clients: connections that never finish their headers
are closed within ``--header-timeout`` (trickling bytes does not keep them open), a normal client
gets through while hundreds of them are open, and the engine worker runs at a lower priority."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from sdrest.testing import TinyModelSet
from tests.live import serve_process

pytestmark = pytest.mark.native

HEADER_TIMEOUT = 2.0
SLOW_CLIENTS = 200


def _slow_client(port: int) -> socket.socket:
    """A connection that starts a request and never finishes its headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes ``sock`` before ``deadline`` (it sends nothing else)."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def test_slow_clients_are_cut_off_and_others_get_through(
    tiny_models: TinyModelSet, tmp_path: Path
) -> None:
    flags = ["--header-timeout", str(HEADER_TIMEOUT), "--max-connections", "400"]
    with serve_process(
        [sys.executable, "-m", "sdrest"], tiny_models, tmp_path / "data", extra=flags
    ) as (_process, url):
        port = int(url.rsplit(":", 1)[1])
        opened = time.monotonic()
        slow = [_slow_client(port) for _ in range(SLOW_CLIENTS)]
        stop = threading.Event()

        def trickle() -> None:  # a few keep sending a byte at a time: still cut off
            while not stop.wait(0.3):
                for sock in slow[:5]:
                    with contextlib.suppress(OSError):
                        sock.send(b"x")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            # A normal client while all of them are open: answered at once.
            with httpx.Client(base_url=url, timeout=5) as http:
                for _ in range(5):
                    started = time.monotonic()
                    assert http.get("/api/health").status_code == 200
                    assert time.monotonic() - started < 1.0
            deadline = opened + HEADER_TIMEOUT + 3.0
            closed = [_closed_by_server(sock, deadline) for sock in slow]
            assert all(closed), f"{closed.count(False)} slow connections still open"
            assert time.monotonic() - opened < HEADER_TIMEOUT + 3.0
        finally:
            stop.set()
            trickler.join()
            for sock in slow:
                sock.close()
        # Keep-alive connections that went quiet are not affected until they start a request
        # they never finish; a fresh client still works after the storm.
        assert httpx.get(f"{url}/api/health", timeout=5).status_code == 200


def test_the_engine_worker_runs_at_a_lower_priority(
    tiny_models: TinyModelSet, tmp_path: Path
) -> None:
    quick = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 1}}
    with (
        serve_process([sys.executable, "-m", "sdrest"], tiny_models, tmp_path / "data") as (
            process,
            url,
        ),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        job = http.post("/sdcpp/v1/img_gen", json=quick).json()
        assert http.get(f"/sdcpp/v1/jobs/{job['id']}?wait=60").json()["status"] == "completed"
        worker = int(http.get("/api/system").json()["system"]["engine"]["worker_pid"])
        server_nice = os.getpriority(os.PRIO_PROCESS, process.pid)
        assert os.getpriority(os.PRIO_PROCESS, worker) == min(19, server_nice + 10)
