"""Shared fixtures: settings in temporary folders, a service with a fake engine, an HTTP client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from tests.fakes import FakeEngine, write_fake_checkpoint, write_fake_lora


@pytest.fixture(autouse=True)
def _process_logging_restored() -> Iterator[None]:
    """Tests that run ``sdrest.cli.main`` in-process configure logging for the whole process:
    handlers on the stderr pytest captured for that test (closed after it) and other loggers
    disabled. Undo it, so later tests' server threads never log to a closed file."""
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled
    known = {lg.name for lg in loggers}
    for name, new in list(logging.root.manager.loggerDict.items()):
        if name not in known and isinstance(new, logging.Logger):
            new.handlers.clear()  # a logger the test's configuration created


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_fake_checkpoint(root / "checkpoints" / "tiny.safetensors")
    write_fake_lora(root / "lora" / "style.safetensors")
    return root


def settings_in(tmp_path: Path, models_dir: Path, **flags: Any) -> Settings:
    """Settings whose folders are all under ``tmp_path`` (no environment), plus ``flags``.
    No ``preload``: tests start from a cold engine unless they ask for one."""
    return load_settings(
        {
            "models_dir": str(models_dir),
            "data_dir": str(tmp_path / "data"),
            "output_dir": str(tmp_path / "outputs"),
            "preload": False,
            "allow_url_images": False,  # tests run offline: a test that fetches turns it on
            **flags,
        },
        env={},
    )


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return settings_in(tmp_path, models_dir, max_queue=3)


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def service(settings: Settings, fake_engine: FakeEngine) -> AsyncIterator[SdrestService]:
    async with SdrestService(settings, engine=fake_engine) as svc:
        yield svc


@pytest.fixture
async def client(service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
