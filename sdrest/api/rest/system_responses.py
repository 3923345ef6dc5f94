"""The answers of ``/api/status``, ``/api/version``, ``/api/config``, ``/api/system`` and
``/api/system/restart`` as typed Structs (field order is the wire order). Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from sdrest import __version__
from sdrest.api.rest.system_info import Host, VersionInfo
from sdrest.schemas import QueueSnapshot
from sdrest.schemas.nodes import NodeInfo
from sdrest.settings import Limits, Settings


class ServerStatus(msgspec.Struct, kw_only=True):
    """The server part of ``/api/status``."""

    running: bool = True
    host: str
    port: int
    uptime: float
    """Seconds since the service started."""
    restarting: bool


class QueueCounts(msgspec.Struct, kw_only=True):
    """The queue part of ``/api/status``."""

    running: bool = True
    queue_size: int
    active_generations: int
    max_queue_size: int


class ModelCounts(msgspec.Struct):
    """The models part of ``/api/status``."""

    loaded_count: int
    available_count: int
    loaded_model: str | None


class StatusReply(msgspec.Struct):
    """``GET /api/status``: server, queue and model counts."""

    server: ServerStatus
    generation_queue: QueueCounts
    models: ModelCounts

    @classmethod
    def of(
        cls,
        settings: Settings,
        snapshot: QueueSnapshot,
        *,
        uptime: float,
        restarting: bool,
        available: int,
        loaded_model: str | None,
    ) -> StatusReply:
        """The status over one queue snapshot."""
        return cls(
            server=ServerStatus(
                host=settings.host, port=settings.port, uptime=uptime, restarting=restarting
            ),
            generation_queue=QueueCounts(
                queue_size=len(snapshot.queued),
                active_generations=0 if snapshot.current is None else 1,
                max_queue_size=settings.limits.max_queue,
            ),
            models=ModelCounts(len(snapshot.loaded_models), available, loaded_model),
        )


class Commit(msgspec.Struct):
    """The commit the server runs (``unknown`` outside a checkout without build variables)."""

    short: str
    full: str


class VersionReply(msgspec.Struct):
    """``GET /api/version``."""

    version: str
    type: str
    """``release`` or ``development`` (uncommitted changes, or no commit known)."""
    commit: Commit
    branch: str | None
    clean: bool | None
    build_time: str | None

    @classmethod
    def of(cls, info: VersionInfo) -> VersionReply:
        """The answer for what :func:`~sdrest.api.rest.system_info.read_version` found."""
        return cls(
            version=info.version,
            type=info.type,
            commit=Commit(info.commit_full[:7], info.commit_full),
            branch=info.branch,
            clean=info.clean,
            build_time=info.build_time,
        )


class ConfigReply(msgspec.Struct):
    """``GET /api/config``."""

    config: dict[str, Any]
    """The settings tree minus secrets (free-form by nature: every section and setting)."""


class EngineStatus(msgspec.Struct):
    """What runs the native library (``/api/system``)."""

    mode: str
    worker_pid: int | None
    worker_starts: int
    worker_crashes: int
    loaded_models: list[str]


class SystemInfo(msgspec.Struct, kw_only=True):
    """The ``system`` object of ``/api/system``."""

    platform: str
    python: str
    cpu_count: int | None
    threads: int
    """The native threads models load with: ``--threads``, or one per physical core when it is
    0 (the library's own count)."""
    memory_total: int | None
    memory_available: int | None
    process_rss: int | None
    sdrest_version: str
    library_version: str | None
    library_system_info: str | None
    engine: EngineStatus
    gpu_backend: str
    loaded_model: str | None
    limits: Limits
    started_at: str
    """ISO 8601, UTC."""


class SystemReply(msgspec.Struct):
    """``GET /api/system``: hardware, library, engine and limits."""

    system: SystemInfo
    nodes: list[NodeInfo] = msgspec.field(default_factory=list)
    """The nodes sharing the queue (``--database-url`` / ``--engine-workers``): workers, the
    job each runs, loaded models, last heartbeat; empty on a single-queue server."""

    @classmethod
    def of(
        cls,
        engine: EngineStatus,
        host: Host,
        *,
        library_version: str | None,
        library_system_info: str | None,
        gpu_backend: str,
        loaded_model: str | None,
        limits: Limits,
        started_at: float,
        threads: int,
    ) -> SystemReply:
        """The answer from the engine's report and the host's facts."""
        return cls(
            SystemInfo(
                platform=host.platform,
                python=host.python,
                cpu_count=host.cpu_count,
                threads=threads,
                memory_total=host.memory_total,
                memory_available=host.memory_available,
                process_rss=host.process_rss,
                sdrest_version=__version__,
                library_version=library_version,
                library_system_info=library_system_info,
                engine=engine,
                gpu_backend=gpu_backend,
                loaded_model=loaded_model,
                limits=limits,
                started_at=datetime.fromtimestamp(started_at, UTC).isoformat(),
            )
        )


class RestartReply(msgspec.Struct, kw_only=True):
    """The 202 of ``POST /api/system/restart``."""

    message: str = "Server restart initiated"
    mode: str = "in-process"
    queued_jobs: int
    detail: str = (
        "the model is unloaded after the running job and the models folder is rescanned;"
        " queued jobs stay queued"
    )
