"""A preset of two files (diffusion model + TAESD) generates through the real library."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from sdrest.models import ModelPreset
from sdrest.service import SdrestService
from sdrest.settings import load_settings
from sdrest.testing import TinyModelSet, write_flux2_klein
from tests.native.helpers import output_pixels, quick, run

pytestmark = pytest.mark.native


async def test_preset_with_taesd_generates(tiny_models: TinyModelSet, tmp_path: Path) -> None:
    dit = tiny_models.root / "diffusion_models" / "tiny-dit.gguf"
    if not dit.exists():
        write_flux2_klein(dit, variant="for_taesd")
    settings = load_settings(
        {"models_dir": str(tiny_models.root), "data_dir": str(tmp_path / "data"), "threads": 2},
        env={},
    )
    preset = ModelPreset(
        name="tiny-pair",
        model="tiny-dit",
        taesd="tiny-taesd",
        defaults={"sample_params": {"sample_steps": 2}},
    )
    settings = msgspec.structs.replace(settings, presets={"tiny-pair": preset})
    async with SdrestService(settings) as service:
        assert service.registry.get("tiny-dit").role == "diffusion_model"
        job = await run(service, quick(model="tiny-pair", seed=2))
        assert job.status == "completed", job.error
        again = await run(service, quick(model="tiny-pair", seed=2))
        assert output_pixels(service, job) == output_pixels(service, again)
        plain = await run(service, quick(model="tiny-flux2", seed=2))  # switches the model
        assert plain.status == "completed", plain.error
