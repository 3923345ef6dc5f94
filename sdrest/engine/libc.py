"""The process's C library, found without a search.

``ctypes.util.find_library("c")`` runs ``ldconfig -p`` in a subprocess on Linux: tens of
milliseconds, twice on the engine worker's way to its first model load. The C library is
already in the process, so its symbols are reached through the process's own namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


def libc() -> ctypes.CDLL | None:
    """The C library (``free``, ``prctl``...); None where there is none to call (Windows)."""
    if sys.platform == "win32":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)  # dlopen(NULL): libc is among its symbols
    except OSError:  # pragma: no cover - a platform without dlopen(NULL)
        name = ctypes.util.find_library("c")
        return ctypes.CDLL(name, use_errno=True) if name else None
