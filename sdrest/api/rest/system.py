"""``/api/status``, ``/api/version`` (public), ``/api/config``, ``/api/system`` and
``/api/system/restart``.

Restart is in-process and keeps the queue: the engine frees its model (after the job running
now, since native calls are serialized), the models folder is rescanned, the default model goes
back to the configured one, and queued jobs run on as before. The process itself keeps running:
re-executing it would drop every open connection and /ws client for no gain, and a supervisor
restart is the operator's call (queued jobs survive that too: they are on disk).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest import __version__
from sdrest.api.common import JSONResponse, service_of
from sdrest.auth import require
from sdrest.errors import ConflictError
from sdrest.service import SdrestService
from sdrest.settings import public_settings

logger = logging.getLogger(__name__)

_GIT_TIMEOUT = 3.0
_BACKEND_MARKERS = (
    (b"ggml_backend_cuda", "cuda"),
    (b"ggml_backend_hip", "rocm"),
    (b"ggml_backend_vk", "vulkan"),
    (b"ggml_backend_metal", "metal"),
    (b"ggml_backend_sycl", "sycl"),
)


class VersionInfo(msgspec.Struct, frozen=True):
    """What ``/api/version`` reports; read once."""

    version: str
    type: str
    commit_full: str
    branch: str | None
    clean: bool | None
    build_time: str | None


class SystemState:
    """Per-app facts computed once off the loop (version, GPU backend) and the restart task."""

    def __init__(self) -> None:
        self.version: VersionInfo | None = None
        self.backend: str | None = None
        self.lock = asyncio.Lock()
        self.restart_task: asyncio.Task[None] | None = None


def _state(request: Request) -> SystemState:
    state: SystemState = request.app.state.system
    return state


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


def read_version(package_dir: Path, env: dict[str, str]) -> VersionInfo:
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


async def _once(state: SystemState, attr: str, compute: Callable[[], Any]) -> Any:
    async with state.lock:
        if getattr(state, attr) is None:
            setattr(state, attr, await asyncio.to_thread(compute))
    return getattr(state, attr)


async def status(request: Request) -> Response:
    """``GET /api/status`` (public): server, queue and model counts."""
    service = service_of(request)
    settings = service.settings
    current = service.current_job
    restarting = _state(request).restart_task is not None
    return JSONResponse(
        {
            "server": {
                "running": True,
                "host": settings.host,
                "port": settings.port,
                "uptime": round(time.time() - service.started_at, 3),
                "restarting": restarting,
            },
            "generation_queue": {
                "running": True,
                "queue_size": len(service.queued_ids()),
                "active_generations": 0 if current is None else 1,
                "max_queue_size": settings.limits.max_queue,
            },
            "models": {
                "loaded_count": len(service.loaded_models),
                "available_count": len(service.registry.generation_models()),
                "loaded_model": service.loaded_model,
            },
        }
    )


async def version(request: Request) -> Response:
    """``GET /api/version`` (public)."""
    env = dict(os.environ)
    package_dir = Path(__file__).resolve().parents[2]
    info: VersionInfo = await _once(
        _state(request), "version", lambda: read_version(package_dir, env)
    )
    return JSONResponse(
        {
            "version": info.version,
            "type": info.type,
            "commit": {"short": info.commit_full[:7], "full": info.commit_full},
            "branch": info.branch,
            "clean": info.clean,
            "build_time": info.build_time,
        }
    )


async def config(request: Request) -> Response:
    """``GET /api/config``: the settings, secrets left out (signed-in users)."""
    principal = require(request, "models:read")
    settings = service_of(request).settings
    body = public_settings(settings)
    body["presets"] = sorted(settings.presets)
    if not principal.is_admin:  # folders on the server are the operator's business
        for key in ("models_dir", "output_dir", "data_dir"):
            body.pop(key, None)
    return JSONResponse({"config": body})


def _memory() -> dict[str, int | None]:
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
    return {"memory_total": total, "memory_available": available, "process_rss": rss}


async def system(request: Request) -> Response:
    """``GET /api/system``: hardware, library, engine and limits (signed-in users). The library
    version comes from the engine (the worker reports it when it starts): the server process
    never loads the native library for this."""
    require(request, "models:read")
    service = service_of(request)
    engine = service.engine.info()
    memory = await asyncio.to_thread(_memory)
    backend = await _once(_state(request), "backend", detect_backend)
    limits = service.settings.limits
    return JSONResponse(
        {
            "system": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                **memory,
                "sdrest_version": __version__,
                "library_version": engine.library_version,
                "library_system_info": engine.system_info,
                "engine": {
                    "mode": engine.mode,
                    "worker_pid": engine.worker_pid,
                    "worker_starts": engine.worker_starts,
                    "worker_crashes": engine.worker_crashes,
                    "loaded_models": list(engine.loaded_models),
                },
                "gpu_backend": backend,
                "loaded_model": service.loaded_model,
                "limits": msgspec.to_builtins(limits),
                "started_at": datetime.fromtimestamp(service.started_at, UTC).isoformat(),
            }
        }
    )


async def _restart(service: SdrestService, state: SystemState) -> None:
    try:
        await service.unload_model()
        await service.refresh_models()
        service.reset_default_model()
        logger.info("in-process restart done; %d jobs still queued", len(service.queued_ids()))
    except Exception:
        logger.exception("in-process restart failed")
    finally:
        state.restart_task = None


async def restart(request: Request) -> Response:
    """``POST /api/system/restart`` (admin): in-process restart, queue kept (see module doc)."""
    require(request, "system:manage")
    state = _state(request)
    if state.restart_task is not None:
        raise ConflictError("a restart is already in progress")
    service = service_of(request)
    state.restart_task = asyncio.create_task(_restart(service, state), name="sdrest-restart")
    return JSONResponse(
        {
            "message": "Server restart initiated",
            "mode": "in-process",
            "queued_jobs": len(service.queued_ids()),
            "detail": "the model is unloaded after the running job and the models folder is"
            " rescanned; queued jobs stay queued",
        },
        status_code=202,
    )


SYSTEM_ROUTES: list[BaseRoute] = [
    Route("/status", status, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/config", config, methods=["GET"]),
    Route("/system", system, methods=["GET"]),
    Route("/system/restart", restart, methods=["POST"]),
]
"""Routes of the system endpoints."""
