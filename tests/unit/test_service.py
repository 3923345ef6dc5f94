"""The service without HTTP: submit, the 429 bound, stop, expiry, and recovery after a restart
(a second service over the same data folder)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from sdrest.engine.base import Engine
from sdrest.errors import GoneError, NotFoundError, QueueFullError
from sdrest.schemas import ImgGenRequest, Job
from sdrest.schemas.request import SampleParams
from sdrest.service import MAX_ATTEMPTS, SdrestService
from sdrest.settings import Settings
from tests.conftest import settings_in
from tests.fakes import FakeEngine

TIMEOUT = 5.0


def small(seed: int = 7) -> ImgGenRequest:
    return ImgGenRequest(
        prompt=f"job {seed}",
        width=64,
        height=64,
        seed=seed,
        sample_params=SampleParams(sample_steps=2),
    )


def held_engine() -> FakeEngine:
    engine = FakeEngine()
    engine.hold = asyncio.Event()
    return engine


async def running(service: SdrestService, engine: FakeEngine, job: Job) -> None:
    """Wait until the engine holds ``job``."""
    await asyncio.wait_for(engine.holding.wait(), TIMEOUT)
    current = service.runner.current_job
    assert current is not None and current.id == job.id


def test_the_fake_engine_is_an_engine() -> None:
    engine: Engine = FakeEngine()  # mypy checks FakeEngine against the Engine protocol here
    assert engine.supports_abort and engine.loaded_model is None


def test_unit_tests_do_not_load_the_native_binding() -> None:
    if "tests.native.conftest" in sys.modules:
        pytest.skip("the native tests' conftest was collected: it loads the binding on purpose")
    assert "stable_diffusion_cpp" not in sys.modules
    assert "sdrest.engine.native" not in sys.modules


def test_an_app_without_auth_does_not_import_the_token_stack() -> None:
    # authlib and cryptography cost ~80 ms of start-up; with auth off nothing needs them.
    code = (
        "import sys; from sdrest.app import create_app; "
        "print(sorted(m for m in ('authlib', 'cryptography', 'psycopg') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_submit_plans_stores_and_runs_a_job(
    service: SdrestService, fake_engine: FakeEngine
) -> None:
    job = await service.submit(small(seed=11), owner="alice", family="rest")
    assert job.status in ("queued", "generating")  # the idle consumer may have taken it already
    assert job.model == "tiny" and job.owner == "alice"
    assert job.request is not None and job.request.model == "tiny"  # the default, recorded
    done = await service.wait(job.id, TIMEOUT)
    assert done.status == "completed" and done.result is not None
    [image] = done.result.images
    assert image.seed == 11 and (service.output_dir / job.id / image.filename).is_file()
    assert [plan.seed for plan in fake_engine.calls] == [11]
    stored = await service.store.get(job.id)
    assert stored is not None and stored.status == "completed" and stored.family == "rest"


async def test_unknown_jobs_are_404(service: SdrestService) -> None:
    with pytest.raises(NotFoundError):
        await service.get("job_0_nothing")
    with pytest.raises(NotFoundError):
        await service.cancel("job_0_nothing")


async def test_a_full_queue_is_a_429_and_the_job_is_not_kept(settings: Settings) -> None:
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as service:  # max_queue = 3
        first = await service.submit(small(1))
        await running(service, engine, first)
        queued = [await service.submit(small(seed)) for seed in (2, 3, 4)]
        with pytest.raises(QueueFullError) as refused:
            await service.submit(small(5))
        assert refused.value.status == 429 and refused.value.code == "queue_full"
        assert service.runner.queued_ids() == [job.id for job in queued]
        assert len(await service.list_jobs()) == 4  # nothing stored for the refused one
        await service.cancel(queued[0].id)
        assert (await service.submit(small(6))).status == "queued"  # a place is free again
        assert engine.hold is not None
        engine.hold.set()


async def test_stop_and_cancel_through_the_service(settings: Settings) -> None:
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as service:
        first = await service.submit(small(1))
        await running(service, engine, first)
        second = await service.submit(small(2))
        cancelled = await service.cancel(second.id)
        assert cancelled.status == "cancelled" and service.runner.queued_ids() == []
        stopped = await service.request_stop(first.id, wait=True)
        assert stopped.status == "cancelled" and stopped.error is not None
        assert stopped.error.code == "interrupted"
        assert (await service.get(first.id)).status == "cancelled"
        assert (await service.get(second.id)).status == "cancelled"


# -- expiry ------------------------------------------------------------------------------------


async def test_expire_now_removes_finished_jobs_and_their_files(
    tmp_path: Path, models_dir: Path
) -> None:
    settings = settings_in(tmp_path, models_dir, job_ttl=0.0)  # everything finished is old
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as service:
        assert engine.hold is not None
        engine.hold.set()
        done = await service.wait((await service.submit(small(1))).id, TIMEOUT)
        assert done.status == "completed"
        folder = service.output_dir / done.id
        assert any(folder.iterdir())
        engine.hold.clear()
        unfinished = await service.submit(small(2))
        await running(service, engine, unfinished)

        assert await service.expire_now() == [done.id]
        assert not folder.exists()
        with pytest.raises(GoneError) as gone:
            await service.get(done.id)
        assert gone.value.status == 410
        assert service.runner.live(done.id) is None
        assert (await service.get(unfinished.id)).status == "generating"  # never expired
        assert await service.expire_now() == []  # once only
        engine.hold.set()


async def test_expire_now_keeps_jobs_inside_their_retention(service: SdrestService) -> None:
    done = await service.wait((await service.submit(small(1))).id, TIMEOUT)
    assert await service.expire_now() == []
    assert (service.output_dir / done.id).is_dir()
    assert (await service.get(done.id)).status == "completed"


# -- recovery after a restart ------------------------------------------------------------------


async def test_a_restart_requeues_queued_jobs_and_retries_the_running_one_once(
    settings: Settings,
) -> None:
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as before:
        interrupted = await before.submit(small(1))
        await running(before, engine, interrupted)
        waiting = [await before.submit(small(seed)) for seed in (2, 3)]
    # The process stopped: the running job is left "generating", the others "queued".
    again = held_engine()
    async with SdrestService(settings, engine=again) as after:
        await running(after, again, interrupted)  # first again, as it was accepted first
        assert after.runner.queued_ids() == [job.id for job in waiting]
        retried = await after.get(interrupted.id)
        assert retried.status == "generating" and retried.attempts == 2
        assert again.hold is not None
        again.hold.set()
        finals = [await after.wait(job.id, TIMEOUT) for job in (interrupted, *waiting)]
        assert [job.status for job in finals] == ["completed"] * 3
        assert [plan.seed for plan in again.calls] == [1, 2, 3]
        assert [job.attempts for job in finals] == [2, 1, 1]


async def test_a_job_interrupted_max_attempts_times_fails_with_server_restarted(
    settings: Settings,
) -> None:
    assert MAX_ATTEMPTS == 2
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as first:
        job = await first.submit(small(1))
        await running(first, engine, job)
        behind = await first.submit(small(2))
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as second:
        await running(second, engine, job)  # the retry: interrupted again
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as third:
        failed = await third.get(job.id)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.code == "server_restarted"
        assert f"{MAX_ATTEMPTS} times" in failed.error.message
        assert failed.attempts == MAX_ATTEMPTS and failed.completed is not None
        # The one behind it runs; the failed one never reaches the engine again.
        await running(third, engine, behind)
        assert [plan.seed for plan in engine.calls] == [2]
        assert third.runner.queued_ids() == []
        assert engine.hold is not None
        engine.hold.set()
        assert (await third.wait(behind.id, TIMEOUT)).status == "completed"


async def test_a_recovered_job_that_no_longer_plans_fails_with_its_error(
    settings: Settings, models_dir: Path
) -> None:
    engine = held_engine()
    async with SdrestService(settings, engine=engine) as before:
        first = await before.submit(small(1))
        await running(before, engine, first)
        orphan = await before.submit(small(2))
    (models_dir / "checkpoints" / "tiny.safetensors").unlink()  # its model is gone
    async with SdrestService(settings, engine=FakeEngine()) as after:
        for job_id in (first.id, orphan.id):
            failed = await after.get(job_id)
            assert failed.status == "failed" and failed.error is not None
            assert failed.error.code.endswith("not_found"), failed.error
        assert after.runner.queued_ids() == []
