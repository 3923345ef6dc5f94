"""The nodes of a shared queue (``--database-url``): what each one's heartbeat says."""

from __future__ import annotations

import msgspec


class WorkerInfo(msgspec.Struct, kw_only=True):
    """One engine worker of a node: what it runs and which models it holds."""

    name: str
    device: str = ""
    job: str | None = None
    """The job it runs now, if any."""
    loaded_models: list[str] = msgspec.field(default_factory=list)


class NodeInfo(msgspec.Struct, kw_only=True):
    """One node's last heartbeat: an API node, a worker node, or both."""

    name: str
    role: str
    """``api``, ``worker`` or ``api+worker``."""
    host: str = ""
    pid: int = 0
    started: float = 0.0
    heartbeat: float = 0.0
    """Unix seconds of its last heartbeat."""
    workers: list[WorkerInfo] = msgspec.field(default_factory=list)
