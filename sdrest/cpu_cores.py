"""How many native threads ``threads = 0`` means, without loading the native library.

The engine passes the library's own ``sd_get_num_physical_cores()`` (what ``sd-server`` uses);
``sdrest serve --help`` and ``/api/system`` show the same number from the server process, which
never loads the library. :func:`physical_cores` is that function of stable-diffusion.cpp as
vendored by ``stable-diffusion-cpp-python`` 0.4.7, step by step (a native test checks they agree).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_SYSFS = "/sys/devices/system/cpu"


def _linux_sibling_sets(sysfs: str) -> set[str]:
    """The distinct ``thread_siblings`` masks, as the library probes them. Its path lacks the
    ``/cpu`` before the number (``/sys/devices/system/cpu0/...``), so on Linux the probe finds
    nothing and the count falls back to the logical CPUs; copied as it is, so both agree."""
    siblings: set[str] = set()
    cpu = 0
    while True:
        path = Path(f"{sysfs}{cpu}/topology/thread_siblings")
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return siblings
        if lines:
            siblings.add(lines[0])
        cpu += 1


def physical_cores(sysfs: str = _SYSFS) -> int:
    """The library's count of physical cores (``sd_get_num_physical_cores``), at least 1."""
    if sys.platform.startswith("linux"):
        found = _linux_sibling_sets(sysfs)
        if found:
            return len(found)
    elif sys.platform == "darwin":
        for key in ("hw.perflevel0.physicalcpu", "hw.physicalcpu"):
            value = _sysctl(key)
            if value:
                return value
    logical = os.cpu_count() or 0
    if logical <= 0:
        return 4
    return logical if logical <= 4 else logical // 2


def _sysctl(key: str) -> int | None:
    """An integer sysctl (macOS), None when it cannot be read."""
    import subprocess

    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


def effective_threads(configured: int) -> int:
    """The threads models load with: ``configured`` when set, else one per physical core."""
    return configured if configured > 0 else physical_cores()
