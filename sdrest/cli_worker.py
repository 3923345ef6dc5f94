"""``sdrest worker``: engine workers only, on a machine of their own, claiming jobs from the
shared PostgreSQL queue (``--database-url``). No HTTP: clients talk to the API nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from sdrest.engine.base import Engine
from sdrest.errors import SdrestError
from sdrest.settings import Settings

logger = logging.getLogger(__name__)


async def run_worker_node(
    settings: Settings,
    stop: asyncio.Event | None = None,
    engine_factory: Callable[[Settings], Engine] | None = None,
) -> None:
    """Run this node's engine workers until ``stop`` is set (or SIGTERM / SIGINT).
    ``engine_factory`` makes each worker's engine (default: the one the settings ask for)."""
    from sdrest.jobs.cluster import ClusterRunner
    from sdrest.service import SdrestService

    engine = engine_factory(settings) if engine_factory is not None else None
    service = SdrestService(settings, engine=engine)
    runner = service.runner
    assert isinstance(runner, ClusterRunner)  # a database URL always makes one
    if engine_factory is not None:
        runner.engine_factory = engine_factory
    runner.node.role = "worker"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with service:
        logger.info(
            "worker node %s: %d engine worker(s) on %s",
            runner.node.name,
            max(settings.engine.engine_workers, 1),
            settings.engine.devices or "the default device",
        )
        await stop.wait()
    logger.info("worker node %s stopped", runner.node.name)


def run(settings: Settings) -> int:
    """The ``sdrest worker`` command."""
    if not settings.database_url:
        sys.stderr.write("sdrest worker: --database-url (or SDREST_DATABASE_URL) is required\n")
        return 2
    if settings.engine.engine_workers < 1 and not settings.engine.devices:
        sys.stderr.write("sdrest worker: --engine-workers must be at least 1\n")
        return 2
    try:
        asyncio.run(run_worker_node(settings))
    except SdrestError as exc:  # the database is unreachable at start, a bad models folder
        sys.stderr.write(f"sdrest worker: {exc.message}\n")
        return 1
    return 0
