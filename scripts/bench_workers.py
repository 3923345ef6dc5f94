"""``scripts/bench --workers``: what a second engine worker buys on one machine.

Runs the same jobs through a service with 1 engine worker (the classic in-memory queue) and one
with 2 (the queue in the database, SQLite here; PostgreSQL with ``--database-url``), every
worker at ``--threads 1``, on the synthesized tiny model, and prints from that one run:

- jobs per second with a burst of ``--jobs`` jobs queued at once, and the 2 / 1 ratio;
- the submit-to-start latency on an idle queue (from the submit call to the job's
  ``generating`` event: accepting, the claim, the worker's start), and its 2 / 1 ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench")
_LATENCY_RUNS = 5


async def _measure(
    models: Any, work: Path, workers: int, args: argparse.Namespace
) -> tuple[float, float]:
    """(jobs per second, median submit-to-start seconds) with ``workers`` engine workers."""
    from sdrest.schemas import ImgGenRequest
    from sdrest.schemas.request import SampleParams
    from sdrest.service import SdrestService
    from sdrest.settings import load_settings

    flags: dict[str, Any] = {
        "models_dir": str(models.root),
        "data_dir": str(work / "data"),
        "model": models.checkpoint.stem,
        "threads": 1,
        "engine_workers": workers,
        "preview": "none",
        "database_url": args.database_url or None,
    }
    settings = load_settings(flags, env={})
    request = ImgGenRequest(
        prompt="a lovely cat",
        width=args.size,
        height=args.size,
        seed=42,
        sample_params=SampleParams(sample_steps=args.steps),
    )
    async with SdrestService(settings) as service:
        warm = [await service.submit(request) for _ in range(workers)]  # every worker loads
        for job in warm:
            await service.wait(job.id, 600)
        latencies = []
        async with service.events.subscribe() as events:
            for _ in range(_LATENCY_RUNS):
                started = time.perf_counter()
                job = await service.submit(request)
                while True:
                    event = await events.get()
                    if event.job.id == job.id and event.job.status == "generating":
                        break
                latencies.append(time.perf_counter() - started)
                await service.wait(job.id, 600)
        started = time.perf_counter()
        burst = [await service.submit(request) for _ in range(args.jobs)]
        for job in burst:
            done = await service.wait(job.id, 600)
            if done.status != "completed":
                raise RuntimeError(f"job {job.id} ended {done.status}: {done.error}")
        return args.jobs / (time.perf_counter() - started), statistics.median(latencies)


def run(args: argparse.Namespace) -> int:
    """Measure 1 and 2 engine workers and print the figures and their ratios."""
    import sdrest.engine.native  # noqa: F401  native library before numpy (see tests/conftest.py)
    from sdrest.testing import build_models_dir

    logging.getLogger("sdrest").setLevel(logging.WARNING)  # the engine's lines too (worker)
    work = Path(tempfile.mkdtemp(prefix="sdrest-bench-workers-"))
    models = build_models_dir(work / "models")
    measured = {n: asyncio.run(_measure(models, work / f"w{n}", n, args)) for n in (1, 2)}
    store = "PostgreSQL" if args.database_url else "SQLite"
    logger.info(
        "engine workers: %d jobs of %d x %d, %d steps, --threads 1 each (%s queue for 2)",
        args.jobs,
        args.size,
        args.size,
        args.steps,
        store,
    )
    for n, (rate, latency) in measured.items():
        logger.info(
            "%d worker(s): %.2f jobs/s; submit to start median %.1f ms", n, rate, latency * 1000
        )
    logger.info("ratio jobs/s 2 workers / 1 worker        %.2f", measured[2][0] / measured[1][0])
    logger.info("ratio submit-to-start 2 workers / 1      %.2f", measured[2][1] / measured[1][1])
    return 0
