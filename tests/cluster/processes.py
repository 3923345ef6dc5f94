"""Ending the node processes a cluster test started."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence


def stop_processes(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running (they stop cleanly, in parallel), then wait for
    each; one that has not ended within 10 s is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
