"""``/api/status``, ``/api/version`` (public), ``/api/config``, ``/api/system`` and
``/api/system/restart`` endpoints; access rules and answers are declared in
:mod:`sdrest.api.rest.routes`.

Restart keeps the queue. Under ``sdrest serve`` it re-executes the process, as the C++ server
does: the server stops gracefully (queued jobs stay on disk; a job running at that moment is
retried once), then the same command starts again and re-queues them in order. An embedded app
(no ``service.restart_hook``) restarts in-process instead: the engine frees its model (after the
job running now, since native calls are serialized), the models folder is rescanned, the default
model goes back to the configured one, and queued jobs run on as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, service_of
from sdrest.api.rest.system_info import SystemState, read_host
from sdrest.api.rest.system_responses import (
    ConfigReply,
    EngineStatus,
    RestartReply,
    StatusReply,
    SystemReply,
    VersionReply,
)
from sdrest.auth import principal_of
from sdrest.cpu_cores import effective_threads
from sdrest.errors import ConflictError
from sdrest.service import SdrestService
from sdrest.settings import public_settings

logger = logging.getLogger(__name__)
_ANSWER_GRACE = 0.2
"""Seconds between answering a re-exec restart and stopping the server."""

_PACKAGE_DIR = Path(__file__).resolve().parents[2]


def _state(request: Request) -> SystemState:
    state: SystemState = request.app.state.system
    return state


async def status(request: Request) -> Response:
    """Server, queue and model counts (public)."""
    service = service_of(request)
    answer = StatusReply.of(
        service.settings,
        service.queue_snapshot(),
        uptime=round(time.time() - service.started_at, 3),
        restarting=_state(request).restart_task is not None,
        available=len(service.models.generation_models()),
        loaded_model=service.models.last_loaded,
    )
    return JSONResponse(answer)


async def version(request: Request) -> Response:
    """The version and the commit it was built from (public)."""
    info = await _state(request).version_info(_PACKAGE_DIR)
    return JSONResponse(VersionReply.of(info))


async def config(request: Request) -> Response:
    """The settings, secrets left out (signed-in users)."""
    settings = service_of(request).settings
    body = public_settings(settings)
    body["presets"] = sorted(settings.presets)
    if not principal_of(request).is_admin:  # folders on the server are the operator's business
        for key in ("models_dir", "output_dir", "data_dir"):
            body.pop(key, None)
    return JSONResponse(ConfigReply(body))


async def system(request: Request) -> Response:
    """Hardware, library, engine and limits (signed-in users).

    The library version comes from the engine (the worker reports it when it starts): the
    server process never loads the native library for this."""
    service = service_of(request)
    engine = service.engine.info()
    host = await asyncio.to_thread(read_host)
    answer = SystemReply.of(
        EngineStatus(
            mode=engine.mode,
            worker_pid=engine.worker_pid,
            worker_starts=engine.worker_starts,
            worker_crashes=engine.worker_crashes,
            loaded_models=list(engine.loaded_models),
        ),
        host,
        library_version=engine.library_version,
        library_system_info=engine.system_info,
        gpu_backend=await _state(request).gpu_backend(),
        loaded_model=service.models.last_loaded,
        limits=service.settings.limits,
        started_at=service.started_at,
        threads=effective_threads(service.settings.load.threads),
    )
    answer.nodes = service.nodes()
    return JSONResponse(answer)


async def _restart(service: SdrestService, state: SystemState) -> None:
    try:
        await service.models.unload()
        await service.models.refresh()
        service.models.reset_default()
        queued = len(service.queue_snapshot().queued)
        logger.info("in-process restart done; %d jobs still queued", queued)
    except Exception:
        logger.exception("in-process restart failed")
    finally:
        state.restart_task = None


async def _reexec(service: SdrestService, hook: Callable[[], None]) -> None:
    await asyncio.sleep(_ANSWER_GRACE)  # the 202 reaches the client before connections close
    logger.info(
        "restart requested: re-executing the server (%d jobs queued, kept on disk)",
        len(service.queue_snapshot().queued),
    )
    hook()


async def restart(request: Request) -> Response:
    """Restart, queue kept (admin; see the module doc)."""
    state = _state(request)
    if state.restart_task is not None:
        raise ConflictError("a restart is already in progress")
    service = service_of(request)
    hook = service.restart_hook
    work = _reexec(service, hook) if hook is not None else _restart(service, state)
    state.restart_task = asyncio.create_task(work, name="sdrest-restart")
    answer = RestartReply(queued_jobs=len(service.queue_snapshot().queued))
    return JSONResponse(answer, status_code=202)
