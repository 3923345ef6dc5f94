"""Facts about this build and host for ``/api/version`` and ``/api/system``, plus the /api
family's per-app state (:class:`SystemState`).

No Request here. The readers are blocking (git, the shared library's bytes, ``/proc``): handlers
run them off the event loop, once where the answer cannot change.
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import util as importlib_util
from pathlib import Path

import msgspec

from sdrest import __version__

_GIT_TIMEOUT = 3.0
_BACKEND_MARKERS = (
    (b"ggml_backend_cuda", "cuda"),
    (b"ggml_backend_hip", "rocm"),
    (b"ggml_backend_vk", "vulkan"),
    (b"ggml_backend_metal", "metal"),
    (b"ggml_backend_sycl", "sycl"),
)
BUILD_ENV = ("SDREST_GIT_COMMIT", "SDREST_GIT_BRANCH", "SDREST_BUILD_TIME")
"""Environment variables that describe an installed copy (no git checkout to ask)."""


class VersionInfo(msgspec.Struct, frozen=True):
    """What ``/api/version`` reports; read once."""

    version: str
    type: str
    commit_full: str
    branch: str | None
    clean: bool | None
    build_time: str | None


class Host(msgspec.Struct, frozen=True, kw_only=True):
    """The machine: platform, CPUs and bytes of RAM (None where the OS does not say)."""

    platform: str
    python: str
    cpu_count: int | None
    memory_total: int | None
    memory_available: int | None
    process_rss: int | None


class SystemState:
    """Per-app facts computed once off the loop (version, GPU backend), the restart task, and
    the build variables (:data:`BUILD_ENV`), read from the environment when the app is made."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        source = os.environ if env is None else env
        self.build_env: dict[str, str] = {k: source[k] for k in BUILD_ENV if k in source}
        self.version: VersionInfo | None = None
        self.backend: str | None = None
        self.lock = asyncio.Lock()
        self.restart_task: asyncio.Task[None] | None = None

    async def version_info(self, package_dir: Path) -> VersionInfo:
        """:func:`read_version`, computed on first use."""
        async with self.lock:  # two first requests at once compute it once between them
            if self.version is None:
                env = self.build_env
                self.version = await asyncio.to_thread(read_version, package_dir, env)
        return self.version

    async def gpu_backend(self) -> str:
        """:func:`detect_backend`, computed on first use."""
        async with self.lock:
            if self.backend is None:
                self.backend = await asyncio.to_thread(detect_backend)
        return self.backend


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def read_version(package_dir: Path, env: Mapping[str, str]) -> VersionInfo:
    """The version and, when the package runs from a git checkout, its commit (blocking: run it
    off the loop). ``SDREST_GIT_COMMIT`` / ``SDREST_BUILD_TIME`` serve installed copies."""
    repo = package_dir.parent
    commit = branch = None
    clean: bool | None = None
    if (repo / ".git").exists():
        commit = _git(repo, "rev-parse", "HEAD")
        branch = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
        status = _git(repo, "status", "--porcelain", "--untracked-files=no")
        clean = None if status is None else status == ""
    commit = commit or env.get("SDREST_GIT_COMMIT") or "unknown"
    return VersionInfo(
        version=__version__,
        type="development" if clean is False or commit == "unknown" else "release",
        commit_full=commit,
        branch=branch or env.get("SDREST_GIT_BRANCH"),
        clean=clean,
        build_time=env.get("SDREST_BUILD_TIME"),
    )


def detect_backend() -> str:
    """The native library's GPU backend, read from the shared library's symbol names (no import:
    loading the library just to ask would cost the memory it takes)."""
    spec = importlib_util.find_spec("stable_diffusion_cpp")
    if spec is None or not spec.submodule_search_locations:
        return "unknown"
    lib_dir = Path(next(iter(spec.submodule_search_locations))) / "lib"
    try:
        libraries = [p for p in lib_dir.iterdir() if p.is_file()]
    except OSError:
        return "unknown"
    found: set[str] = set()
    for library in libraries:
        try:
            with library.open("rb") as handle:
                tail = b""
                while chunk := handle.read(1 << 20):
                    window = tail + chunk
                    found.update(name for marker, name in _BACKEND_MARKERS if marker in window)
                    tail = chunk[-32:]
        except OSError:
            continue
    return "+".join(sorted(found)) if found else "cpu"


def read_host() -> Host:
    """Platform, CPU count, total and available RAM and this process's resident size
    (blocking: reads ``/proc`` and the interpreter's binary)."""
    total = available = rss = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            fields = {line.split(":")[0]: line.split()[1] for line in handle if ":" in line}
        total = int(fields["MemTotal"]) * 1024
        available = int(fields.get("MemAvailable", "0")) * 1024 or None
        with open("/proc/self/statm", encoding="ascii") as handle:
            rss = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, KeyError, ValueError, IndexError):
        pass  # not Linux: leave them unknown rather than guess
    return Host(
        platform=platform.platform(),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        memory_total=total,
        memory_available=available,
        process_rss=rss,
    )
