"""Shared fixtures: settings in temporary folders, a service with a fake engine, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from tests.fakes import FakeEngine, write_fake_checkpoint, write_fake_lora


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
