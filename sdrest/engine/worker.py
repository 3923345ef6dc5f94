"""The engine worker process: the native library, serving one call at a time over a socket.

Started by :class:`sdrest.engine.supervisor.WorkerEngine` as
``python -m sdrest.engine.worker FD MEMORY_BUDGET PARENT_PID LOG_LEVEL``. It never outlives the
server: on Linux the kernel kills it when the server dies (``PR_SET_PDEATHSIG``), and everywhere a
watcher thread exits when the parent changes or the socket closes. Ctrl-C in a terminal reaches
the whole process group; the worker ignores it and lets the server decide.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

import msgspec
from PIL import Image

from sdrest.engine import wire
from sdrest.engine.libc import libc
from sdrest.errors import SdrestError
from sdrest.schemas import Progress

if TYPE_CHECKING:
    from sdrest.engine.native import NativeCore

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PARENT_POLL = 0.5


class _Channel:
    """Writes framed replies; log records and progress come from whichever thread logs."""

    def __init__(self, sock: socket.socket, codec: wire.Codec) -> None:
        self._sock = sock
        self._codec = codec
        self._lock = threading.Lock()

    def send(self, message: wire.Reply) -> None:
        frame = self._codec.frame(message)
        with self._lock:
            try:
                self._sock.sendall(frame)
            except OSError:
                os._exit(0)  # the server is gone: nobody wants the rest of this call


class _ForwardLogs(logging.Handler):
    """Every log record goes to the server, which logs it under the same logger name."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._channel.send(wire.LogLine(record.name, record.levelno, record.getMessage()))
        except Exception:  # a log line must never break a native call
            self.handleError(record)


def _die_with_parent(parent_pid: int) -> None:
    c_library = libc() if sys.platform.startswith("linux") else None
    if c_library is not None:
        c_library.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_POLL)
        os._exit(0)

    threading.Thread(target=watch, name="sdrest-parent-watch", daemon=True).start()


def _lower_priority(nice: int) -> None:
    """Add ``nice`` to the niceness of every thread of this process (Linux keeps one per
    thread, and threads the library starts later inherit it from ours). The library then takes
    every core the server's event loop does not want, and the loop gets a core the moment it
    wakes: polls stay fast with no loss of generation speed."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: the calling thread is the one that starts the library's
        threads = [0]
    try:
        for tid in threads:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as exc:  # a sandbox that forbids it: run at the server's priority
        logger.warning("could not lower the engine worker's priority: %s", exc)


def _read_frame(reader: BinaryIO) -> bytes | None:
    header = reader.read(wire.HEADER.size)
    if len(header) < wire.HEADER.size:
        return None
    (size,) = wire.HEADER.unpack(header)
    if size > wire.MAX_FRAME:
        return None
    body = reader.read(size)
    return body if len(body) == size else None


def serve(core: NativeCore, call: wire.Call, send: Callable[[wire.Reply], None]) -> wire.Reply:
    """Run one call on the native core and say how it ended."""

    def emit(progress: Progress) -> None:
        send(wire.ProgressEvent(progress))

    def preview(step: int, image: Image.Image) -> None:
        send(wire.PreviewEvent(step, image))

    images: list[Image.Image] = []
    try:
        match call:
            case wire.GenerateCall(plan=plan, previews=previews):
                images = core.generate(plan, emit, preview if previews else None)
            case wire.UpscaleCall(plan=plan):
                images = [core.upscale(plan, emit)]
            case wire.ConvertCall(plan=plan):
                core.convert(plan, emit)
            case wire.LoadCall(spec=spec):
                core.load(spec, emit)
            case wire.UnloadCall(name=name):
                core.unload(name)
    except Exception as exc:  # the server decides what a failure means; keep serving
        if not isinstance(exc, SdrestError):
            logger.exception("engine call failed")
        return wire.failure(exc, core.loaded_models)
    return wire.Done(images, core.loaded_models)


def main(argv: list[str]) -> int:
    """Serve calls until the server closes the socket."""
    fd, memory_budget, parent_pid, level, nice = (int(arg) for arg in argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    sock = socket.socket(fileno=fd)
    codec = wire.Codec()
    channel = _Channel(sock, codec)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(channel)]
    root.setLevel(level)
    # The native library loads here, before anything imports numpy (a CUDA build crashes
    # otherwise: see README, "GPU").
    from sdrest.engine.native import NativeCore, library_version, system_info

    core = NativeCore(memory_budget)
    channel.send(wire.Ready(os.getpid(), library_version(), system_info()))
    reader = sock.makefile("rb")
    lowered = False
    while (body := _read_frame(reader)) is not None:
        try:
            call = codec.call(body)
        except msgspec.DecodeError as exc:  # a server/worker version mismatch, never user input
            channel.send(wire.failure(exc, core.loaded_models))
            continue
        if isinstance(call, wire.ConfigureCall):
            core.memory_budget, nice = call.memory_budget, call.nice
            root.setLevel(call.log_level)
            channel.send(wire.Done([], core.loaded_models))
            continue
        if not lowered and not isinstance(call, wire.LoadCall | wire.UnloadCall):
            # The start (the library's import, the preload) runs at the server's priority: at
            # start-up the server is busy importing, and a worker niced below it would wait for
            # it instead of loading alongside. The work that runs while clients poll runs lower.
            _lower_priority(nice)
            lowered = True
        channel.send(serve(core, call, channel.send))
    # The server closed the socket (unload, shutdown): exiting frees every context at once.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
