"""Fixtures for tests through the real native library on synthesized tiny models."""

from __future__ import annotations

# The native library is loaded before anything imports numpy: with a CUDA build, numpy's bundled
# libraries loaded first make the library's model load segfault (measured on an H100 build).
# Only here: unit and HTTP tests never load the binding. tests/conftest.py (loaded first) must
# import nothing that imports numpy.
import sdrest.engine.native  # noqa: F401  # isort: skip

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from sdrest.testing import (
    TinyModelSet,
    build_models_dir,
    write_garbage_model,
    write_mismatched_lora,
)
from tests.live import LiveServer, live_server


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModelSet:
    models = build_models_dir(tmp_path_factory.mktemp("tiny") / "models")
    write_garbage_model(models.root / "checkpoints" / "broken.safetensors")
    write_mismatched_lora(models.root / "lora" / "wrong-shape.safetensors")
    write_garbage_model(models.root / "esrgan" / "broken-esrgan.safetensors")
    return models


@pytest.fixture
def native_settings(tmp_path: Path, tiny_models: TinyModelSet) -> Settings:
    return load_settings(
        {
            "models_dir": str(tiny_models.root),
            "data_dir": str(tmp_path / "data"),
            "model": "tiny-flux2",
            "threads": 2,
            "preload": False,  # a cold engine: the first job loads (tests count on it)
        },
        env={},
    )


@pytest.fixture
async def native_service(native_settings: Settings) -> AsyncIterator[SdrestService]:
    async with SdrestService(native_settings) as service:
        yield service


@pytest.fixture
def live(native_settings: Settings) -> Iterator[LiveServer]:
    """A real HTTP server over the real library (for openai, webuiapi, websockets clients)."""
    with live_server(native_settings) as server:
        yield server
