"""The engine in its supervised worker process: real crashes, real cancels, real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from sdrest import cpu_cores
from sdrest.engine.base import ModelSpec
from sdrest.engine.supervisor import WorkerEngine
from sdrest.errors import ConflictError
from sdrest.schemas import ImgGenRequest, Job, LoraSpec
from sdrest.service import SdrestService
from sdrest.settings import Settings
from sdrest.testing import TinyModelSet
from tests.native.helpers import eventually, quick, run

pytestmark = pytest.mark.native


def slow(steps: int = 24, **fields: object) -> ImgGenRequest:
    """A job that samples for seconds on 2 cores (so it can be caught mid-way)."""
    return quick(width=256, height=256, steps=steps, **fields)


def with_engine(settings: Settings, **engine: object) -> Settings:
    return msgspec.structs.replace(
        settings, engine=msgspec.structs.replace(settings.engine, **engine)
    )


@pytest.fixture
async def unchecked_service(native_settings: Settings) -> AsyncIterator[SdrestService]:
    """A service that lets LoRAs reach the library unchecked, so a bad one really aborts it."""
    async with SdrestService(with_engine(native_settings, lora_shape_check=False)) as service:
        yield service


async def _sampling(service: SdrestService, job: Job) -> None:
    """Wait until ``job`` is past its first sampling step."""
    async with asyncio.timeout(60):
        while True:
            current = await service.get(job.id)
            if current.progress.phase == "sampling" and current.progress.step >= 1:
                return
            assert not current.finished, current.error
            await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its parent) still answers kill(0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


async def test_a_lora_that_aborts_the_library_fails_one_job(
    unchecked_service: SdrestService,
) -> None:
    service = unchecked_service
    first = await run(service, quick())
    assert first.status == "completed", first.error
    pid = service.engine.info().worker_pid
    crashed = await run(service, quick(lora=[LoraSpec(path="wrong-shape")]))
    assert crashed.status == "failed" and crashed.error is not None
    assert crashed.error.code == "engine_crashed"
    assert "SIGABRT" in crashed.error.message and "GGML_ASSERT" in crashed.error.message
    assert crashed.attempts == 1  # not retried blindly
    after = await run(service, quick())
    assert after.status == "completed", after.error
    info = service.engine.info()
    assert info.worker_crashes == 1 and info.worker_pid not in (None, pid)
    assert pid is not None and not _alive(pid)


async def test_any_signal_that_kills_the_worker_fails_only_its_job(
    native_service: SdrestService,
) -> None:
    job = await native_service.submit(slow())
    queued = await native_service.submit(quick(seed=3))
    await _sampling(native_service, job)
    pid = native_service.engine.info().worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGSEGV)
    done = await native_service.wait(job.id, timeout=30)
    assert done.status == "failed" and done.error is not None
    assert done.error.code == "engine_crashed" and "SIGSEGV" in done.error.message
    nxt = await native_service.wait(queued.id, timeout=60)
    assert nxt.status == "completed", nxt.error


async def test_a_corrupt_upscaler_fails_its_job_and_the_next_one_runs(
    native_service: SdrestService,
) -> None:
    from PIL import Image

    from sdrest.schemas import UpscaleRequest
    from tests.native.helpers import png_b64

    image = png_b64(Image.new("RGB", (8, 8)))
    bad = await native_service.submit_upscale(UpscaleRequest(image=image, upscaler="broken-esrgan"))
    bad = await native_service.wait(bad.id, timeout=60)
    assert bad.status == "failed" and bad.error is not None
    assert bad.error.code == "model_load_failed"  # refused before the call that would segfault
    job = await run(native_service, quick())
    assert job.status == "completed", job.error
    assert native_service.engine.info().worker_crashes == 0


async def test_cancel_stops_a_generating_job_within_two_seconds(
    native_service: SdrestService,
) -> None:
    job = await native_service.submit(slow())
    await _sampling(native_service, job)
    started = time.monotonic()
    cancelled = await native_service.cancel(job.id)
    elapsed = time.monotonic() - started
    assert cancelled.status == "cancelled" and elapsed < 2.0, (cancelled.status, elapsed)
    assert cancelled.error is not None and cancelled.error.code == "cancelled"
    assert not (native_service.output_dir / job.id).exists()  # nothing half-written
    nxt = await run(native_service, quick())
    assert nxt.status == "completed", nxt.error
    assert native_service.engine.info().worker_crashes == 0  # a cancel is not a crash


async def test_in_process_mode_still_generates_and_refuses_to_stop_a_running_job(
    native_settings: Settings,
) -> None:
    settings = with_engine(native_settings, engine_mode="in-process")
    async with SdrestService(settings) as service:
        assert service.engine.info().mode == "in-process"
        job = await service.submit(slow(steps=6))
        await _sampling(service, job)
        with pytest.raises(ConflictError):
            await service.cancel(job.id)
        done = await service.wait(job.id, timeout=60)
        assert done.status == "completed", done.error


async def test_idle_unload_stops_the_worker_and_the_next_job_starts_one(
    native_settings: Settings,
) -> None:
    async with SdrestService(with_engine(native_settings, idle_unload=0.3)) as service:
        job = await run(service, quick())
        assert job.status == "completed", job.error
        pid = service.engine.info().worker_pid
        assert pid is not None and service.models.last_loaded == "tiny-flux2"
        await eventually(lambda: service.engine.info().worker_pid is None, timeout=10)
        assert service.models.last_loaded is None and not _alive(pid)
        again = await run(service, quick())
        assert again.status == "completed", again.error


async def test_memory_budget_keeps_several_models_loaded(tiny_models: TinyModelSet) -> None:
    size = tiny_models.checkpoint.stat().st_size
    first = ModelSpec(name="first", model_path=str(tiny_models.checkpoint))
    second = ModelSpec(name="second", model_path=str(tiny_models.checkpoint))
    roomy, tight = WorkerEngine(memory_budget=3 * size), WorkerEngine(memory_budget=size + 1)
    try:
        for engine in (roomy, tight):
            await engine.load(first)
            await engine.load(second)
        assert roomy.info().loaded_models == ("first", "second")
        assert tight.info().loaded_models == ("second",)  # the least recently used went
        await roomy.load(first)  # already loaded: most recent now, nothing freed
        assert roomy.info().loaded_models == ("second", "first")
        pid = roomy.info().worker_pid
        await roomy.unload("second")  # one model: the worker and the other model stay
        assert roomy.info().loaded_models == ("first",) and roomy.info().worker_pid == pid
        await roomy.unload()  # everything: the worker exits
        assert roomy.info().worker_pid is None and roomy.loaded_model is None
    finally:
        await roomy.close()
        await tight.close()


async def test_model_switches_wait_for_the_running_job(native_service: SdrestService) -> None:
    job = await native_service.submit(slow(steps=6))
    await _sampling(native_service, job)
    await native_service.models.unload()  # queued behind the job, never during it
    done = await native_service.get(job.id)
    assert done.status == "completed", done.error
    assert native_service.models.last_loaded is None


async def test_stopping_the_service_mid_job_ends_the_worker_at_once(
    native_settings: Settings,
) -> None:
    service = SdrestService(native_settings)
    await service.start()
    job = await service.submit(slow(steps=150))
    await _sampling(service, job)
    pid = service.engine.info().worker_pid
    assert pid is not None
    started = time.monotonic()
    await service.stop()  # the job stays "generating" on disk: the next start retries it
    # Without killing the busy worker, stop() waits out the 5 s grace period.
    assert time.monotonic() - started < 4.0
    assert not _alive(pid)


async def test_a_worker_killed_between_jobs_is_noticed_and_replaced(
    native_service: SdrestService,
) -> None:
    assert (await run(native_service, quick())).status == "completed"
    pid = native_service.engine.info().worker_pid
    assert pid is not None and native_service.models.last_loaded == "tiny-flux2"
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    await eventually(lambda: native_service.models.last_loaded is None, timeout=5)
    info = native_service.engine.info()
    assert info.worker_pid is None and info.worker_crashes == 1
    again = await run(native_service, quick())
    assert again.status == "completed", again.error


def test_threads_zero_means_one_per_physical_core() -> None:
    from sdrest.engine.native import physical_cores

    cores = physical_cores()
    logical = os.cpu_count() or 1
    assert 1 <= cores <= logical  # the library's count, never the wrapper's half
    # The server process's own count (help text, /api/system) is the library's, exactly.
    assert cpu_cores.physical_cores() == cores
