"""A node process for the failure tests, with fake engines whose steps take real time.

``python -m tests.cluster.fake_node worker SETTINGS_JSON STEP_SECONDS`` runs engine workers only,
as ``sdrest worker`` does; ``... api SETTINGS_JSON STEP_SECONDS PORT`` serves HTTP on PORT as
``sdrest serve`` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable

from PIL import Image

from sdrest.engine.base import GenerationPlan, PreviewFn, ProgressFn
from sdrest.errors import EngineAbortedError
from sdrest.schemas import Progress
from sdrest.settings import Settings, load_settings
from tests.fakes import FakeEngine


class SlowFakeEngine(FakeEngine):
    """A fake whose every step sleeps ``step_seconds`` (so a job is "mid-run" for a while)."""

    def __init__(self, step_seconds: float) -> None:
        super().__init__()
        self.step_seconds = step_seconds

    async def generate(
        self, plan: GenerationPlan, on_progress: ProgressFn, on_preview: PreviewFn | None = None
    ) -> list[Image.Image]:
        self.calls.append(plan)
        steps = plan.request.sample_params.sample_steps
        for step in range(1, steps + 1):
            await asyncio.sleep(self.step_seconds)
            if self.aborted.is_set():
                self.aborted.clear()
                raise EngineAbortedError("the running job was stopped")
            on_progress(Progress("sampling", step, steps, self.step_seconds))
            if on_preview is not None and plan.preview_method != "none":
                on_preview(step, Image.new("RGB", (8, 8), (0, step % 256, 0)))
        request = plan.request
        size = (request.width, request.height)
        return [
            Image.new("RGB", size, ((plan.seed + i) % 256, 0, 0))
            for i in range(request.batch_count)
        ]

def main() -> None:
    role, raw, step = sys.argv[1], sys.argv[2], float(sys.argv[3])
    settings = load_settings(json.loads(raw), env={})
    logging.basicConfig(level=logging.INFO, format=f"{role} %(name)s: %(message)s")

    def engine(_: Settings) -> SlowFakeEngine:
        return SlowFakeEngine(step)

    if role == "api":
        asyncio.run(serve_api(settings, int(sys.argv[4]), engine))
        return
    from sdrest.cli_worker import run_worker_node

    asyncio.run(run_worker_node(settings, engine_factory=engine))


async def serve_api(
    settings: Settings, port: int, engine: Callable[[Settings], SlowFakeEngine]
) -> None:
    import uvicorn

    from sdrest.app import create_app
    from sdrest.jobs.cluster import ClusterRunner
    from sdrest.service import SdrestService

    service = SdrestService(settings, engine=engine(settings))
    assert isinstance(service.runner, ClusterRunner)
    service.runner.engine_factory = engine
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    async with service:
        await uvicorn.Server(config).serve()


if __name__ == "__main__":
    main()
