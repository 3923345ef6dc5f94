"""``GET /sdapi/v1/memory`` readings without psutil or torch: /proc, sysconf and NVML.

Blocking (file reads, a native library call): call :func:`memory_report` off the event loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import sys
from pathlib import Path

from sdrest.api.sdapi.responses import CudaReport, MemoryFigures, MemoryReport, RamReport

logger = logging.getLogger(__name__)

_NVML_NAMES = ("libnvidia-ml.so.1", "libnvidia-ml.so", "nvml.dll")
_NVML_SUCCESS = 0


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as ``{key: bytes}`` (values there are in KiB)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and fields and fields[0].isdigit():
            scale = 1024 if len(fields) > 1 and fields[1].lower() == "kb" else 1
            out[key.strip()] = int(fields[0]) * scale
    return out


def _process_rss() -> int:
    """This process's resident memory now (Linux), else its peak (other Unixes)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def ram_report() -> RamReport:
    """``{free, used, total}`` in bytes: ``used`` is this process's resident memory (as A1111
    reports it), ``free`` what the system can still give (MemAvailable), ``total`` physical RAM."""
    try:
        info = parse_meminfo(Path("/proc/meminfo").read_text())
        total, free = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, KeyError):
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            total = page * os.sysconf("SC_PHYS_PAGES")
            free = page * os.sysconf("SC_AVPHYS_PAGES")
        except (OSError, ValueError) as exc:
            return RamReport(error=f"system memory is not readable here: {exc}")
    return RamReport(free=free, used=_process_rss(), total=total)


class _NvmlMemory(ctypes.Structure):
    _fields_ = (
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    )


def _load_nvml() -> ctypes.CDLL | None:
    for name in _NVML_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_report() -> CudaReport:
    """GPU 0 memory from NVML as ``{"system": {free, used, total}}``; ``{"error": why}`` when
    there is no NVIDIA driver. The library's own allocator statistics (A1111's ``allocated``,
    ``reserved``...) come from torch and have no equivalent here."""
    nvml = _load_nvml()
    if nvml is None:
        return CudaReport(error="unavailable")
    if nvml.nvmlInit_v2() != _NVML_SUCCESS:
        return CudaReport(error="NVML could not be initialised")
    try:
        handle = ctypes.c_void_p()
        memory = _NvmlMemory()
        if nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) != _NVML_SUCCESS:
            return CudaReport(error="no GPU found by NVML")
        if nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != _NVML_SUCCESS:
            return CudaReport(error="NVML could not read GPU memory")
        return CudaReport(system=MemoryFigures(memory.free, memory.used, memory.total))
    finally:
        nvml.nvmlShutdown()


def memory_report() -> MemoryReport:
    """The ``/memory`` body: ``{"ram": {...}, "cuda": {...}}``; never raises."""
    try:
        cuda = cuda_report()
    except Exception as exc:  # a broken driver install must not break a status endpoint
        logger.debug("NVML query failed", exc_info=True)
        cuda = CudaReport(error=str(exc))
    return MemoryReport(ram_report(), cuda)
