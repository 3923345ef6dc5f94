"""``sdrest serve``'s head start: the worker and the default model's load begin before the
server's own start-up, and the service adopts that worker."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import msgspec
import pytest

from sdrest.entry import early_worker
from sdrest.head_start import eligible, head_start
from sdrest.jobs.roles import uses_cluster
from sdrest.service import SdrestService
from sdrest.settings import Settings
from sdrest.testing import TinyModelSet
from tests.live import serve_process
from tests.native.helpers import quick, run

pytestmark = pytest.mark.native


def _preloading(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, preload=True)


def _thread_priorities(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_only_a_preloading_single_worker_engine_gets_a_head_start(
    native_settings: Settings,
) -> None:
    base = _preloading(native_settings)
    engine = base.engine
    cases = {
        "default": (base, True),
        "no preload": (msgspec.structs.replace(base, preload=False), False),
        "in-process": (
            msgspec.structs.replace(
                base, engine=msgspec.structs.replace(engine, engine_mode="in-process")
            ),
            False,
        ),
        "two engines": (
            msgspec.structs.replace(base, engine=msgspec.structs.replace(engine, engine_workers=2)),
            False,
        ),
        "database queue": (msgspec.structs.replace(base, database_url="postgresql://x/y"), False),
    }
    for name, (settings, expected) in cases.items():
        assert eligible(settings) is expected, name
        if settings.engine.engine_mode == "worker" and settings.preload:
            assert eligible(settings) is not uses_cluster(settings), name


async def test_the_service_adopts_the_worker_that_loaded_ahead(native_settings: Settings) -> None:
    settings = _preloading(native_settings)
    head = head_start(settings)
    assert head is not None
    pid = head.launched.process.pid
    # The first call settles the load sent ahead: nobody asked this engine to load anything.
    await head.engine.unload("some-other-model")
    assert head.engine.loaded_model == "tiny-flux2"
    # Loads run at the server's priority (start-up), generations below it, on every thread.
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert _thread_priorities(pid) == {ours}
    async with SdrestService(settings, engine=head.engine, registry=head.registry) as service:
        job = await run(service, quick())
        assert job.status == "completed", job.error
        info = service.engine.info()
        assert info.worker_pid == pid and info.worker_starts == 1
        assert _thread_priorities(pid) == {min(19, ours + settings.engine.worker_nice)}
    assert head.launched.process.poll() is not None  # stopped with the service


async def test_a_head_start_the_server_never_adopts_is_stopped(
    native_settings: Settings, tmp_path: Path
) -> None:
    head = head_start(_preloading(native_settings))
    assert head is not None
    await head.engine.close()
    assert head.launched.process.poll() is not None


async def test_a_worker_started_before_the_settings_gets_them_and_the_load(
    native_settings: Settings,
) -> None:
    early = early_worker(["serve"])  # what sdrest/entry.py does first: no budget, no niceness
    assert early is not None
    settings = _preloading(native_settings)
    head = head_start(settings, early)
    assert head is not None and head.launched is early
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    async with SdrestService(settings, engine=head.engine, registry=head.registry) as service:
        job = await run(service, quick())
        assert job.status == "completed", job.error
        info = service.engine.info()
        assert info.worker_pid == early.process.pid and info.worker_starts == 1
        assert info.loaded_models == ("tiny-flux2",)
        # The niceness came with the settings sent after the start.
        assert _thread_priorities(early.process.pid) == {
            min(19, ours + settings.engine.worker_nice)
        }
    assert early.process.poll() is not None


def test_an_early_worker_the_configuration_has_no_use_for_is_stopped(
    native_settings: Settings,
) -> None:
    early = early_worker(["--port", "8080"])  # flags only: it serves
    assert early is not None
    in_process = msgspec.structs.replace(
        _preloading(native_settings),
        engine=msgspec.structs.replace(native_settings.engine, engine_mode="in-process"),
    )
    assert head_start(in_process, early) is None
    assert early.process.poll() is not None


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["python -m sdrest", "sdrest console script"])
def test_sdrest_serve_preloads_in_the_worker_it_started_first(
    tiny_models: TinyModelSet, tmp_path: Path, entry: str
) -> None:
    body = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 1}}
    script = Path(sys.executable).with_name("sdrest")
    command = [sys.executable, "-m", "sdrest"] if entry.startswith("python") else [str(script)]
    with (
        serve_process(command, tiny_models, tmp_path / "data", extra=["--preload"]) as (
            process,
            url,
        ),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        job = http.post("/sdcpp/v1/img_gen", json=body).json()
        assert http.get(f"/sdcpp/v1/jobs/{job['id']}?wait=60").json()["status"] == "completed"
        engine = http.get("/api/system").json()["system"]["engine"]
        assert engine["worker_starts"] == 1 and engine["loaded_models"] == ["tiny-flux2"]
        worker = int(engine["worker_pid"])
        process.send_signal(signal.SIGINT)  # a graceful stop ends the adopted worker too
        assert process.wait(timeout=30) in (0, 130)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
