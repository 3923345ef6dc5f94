"""Starting an engine worker process, with or without an event loop.

:class:`~sdrest.engine.supervisor.WorkerEngine` starts its workers on its event loop. ``sdrest
serve`` starts its first one before any loop exists, as its first step (:func:`launch_worker`),
and may send it the default model's load at once (:meth:`LaunchedWorker.send`): the library's
import and the model's load then run while the server imports its web stack and builds the app,
instead of after. The engine adopts the process on its first call.

This module stays light (no image, schema or wire imports at module level): it is imported
before the worker is started, and everything imported first delays the start.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sdrest.errors import EngineCrashedError

if TYPE_CHECKING:
    from sdrest.engine.wire import Call

logger = logging.getLogger(__name__)


def worker_argv(fd: int, memory_budget: int, nice: int) -> list[str]:
    """The worker's command line (see :mod:`sdrest.engine.worker`)."""
    return [
        sys.executable,
        "-m",
        "sdrest.engine.worker",
        str(fd),
        str(memory_budget),
        str(os.getpid()),
        str(logging.getLogger("sdrest").getEffectiveLevel()),
        str(nice),
    ]


def worker_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment: ours, plus ``extra`` (``--devices``)."""
    # ggml's abort attaches gdb for a backtrace when it can: slow, and pages of noise where the
    # crash report needs the assertion line.
    return {"GGML_NO_BACKTRACE": "1", **os.environ, **extra}


class LaunchedWorker:
    """A worker process started without an event loop, not yet adopted by an engine.

    ``sent`` lists the calls sent ahead (the default model's load); the adopting engine reads
    their answers before its own first call.
    """

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.socket = sock
        self.sent: list[Call] = []
        self.kept = False
        """An engine will adopt it: :meth:`discard` leaves it alone."""

    def send(self, call: Call) -> None:
        """Send a call ahead; the worker runs it as soon as the library is imported."""
        from sdrest.engine.wire import Codec

        try:
            self.socket.sendall(Codec().frame(call))
        except OSError as exc:  # the worker already died: the engine's adoption reports it
            logger.debug("could not send %s ahead: %s", type(call).__name__, exc)
            return
        self.sent.append(call)

    def discard(self) -> None:
        """Stop it now unless an engine keeps it (an early worker the configuration has no use
        for, or one left over when the command ends)."""
        if not self.kept:
            self.close(grace=0)

    def close(self, grace: float = 5.0) -> None:
        """Stop a worker that was never adopted (the server did not start): it exits on the
        socket's EOF, or is killed after ``grace`` seconds."""
        self.socket.close()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def launch_worker(env: Mapping[str, str] | None = None) -> LaunchedWorker:
    """Start a worker process now, from plain (loop-less) code, before the settings are known:
    it imports the library meanwhile, and its budget and niceness come with its first call
    (``ConfigureCall``, sent by :func:`sdrest.head_start.head_start`)."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            worker_argv(theirs.fileno(), memory_budget=0, nice=0),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=worker_env(env or {}),
        )
    except OSError as exc:
        ours.close()
        raise EngineCrashedError(f"the engine worker could not be started: {exc}") from exc
    finally:
        theirs.close()
    return LaunchedWorker(process, ours)
