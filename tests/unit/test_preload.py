"""``--preload``: the default model is loaded at start-up in the background, in queue order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sdrest.engine.base import ModelSpec
from sdrest.schemas import ImgGenRequest
from sdrest.service import SdrestService
from tests.conftest import settings_in
from tests.fakes import FakeEngine

TIMEOUT = 5.0


class SlowLoad(FakeEngine):
    """A fake whose load waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.loads: list[str] = []

    async def load(self, spec: ModelSpec) -> None:
        self.loads.append(spec.name)
        await self.release.wait()
        await super().load(spec)


async def test_start_returns_at_once_and_a_first_job_waits_for_the_preload(
    tmp_path: Path, models_dir: Path
) -> None:
    engine = SlowLoad()
    service = SdrestService(settings_in(tmp_path, models_dir, preload=True), engine=engine)
    await asyncio.wait_for(service.start(), TIMEOUT)  # not held up by the load
    try:
        for _ in range(500):
            if engine.loads:
                break
            await asyncio.sleep(0.01)
        assert engine.loads == ["tiny"] and engine.loaded_model is None
        job = await service.submit(ImgGenRequest(prompt="cat", width=64, height=64))
        await asyncio.sleep(0.05)
        assert engine.calls == []  # queued behind the load
        engine.release.set()
        done = await service.wait(job.id, timeout=TIMEOUT)
        assert done.status == "completed" and engine.loaded_model == "tiny"
        assert engine.loads == ["tiny"]
    finally:
        await service.stop()


async def test_no_preload_leaves_the_engine_cold(tmp_path: Path, models_dir: Path) -> None:
    engine = FakeEngine()
    async with SdrestService(settings_in(tmp_path, models_dir, preload=False), engine=engine):
        await asyncio.sleep(0.05)
        assert engine.loaded_model is None
