"""Presets: several files under one name, with default parameters under the client's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import Settings, load_settings
from tests.fakes import FakeEngine, write_safetensors_header


@pytest.fixture
def preset_settings(tmp_path: Path, models_dir: Path) -> Settings:
    write_safetensors_header(models_dir / "vae" / "ae.safetensors", ["decoder.conv_in.weight"])
    config = tmp_path / "sdrest.toml"
    config.write_text(
        'model = "fast"\n'
        "[presets.fast]\n"
        'model = "tiny"\nvae = "ae"\n'
        "defaults = { width = 96, sample_params = { sample_steps = 3, "
        'sample_method = "euler" } }\n'
    )
    return load_settings(
        {"models_dir": str(models_dir), "data_dir": str(tmp_path / "data"), "vae_tiling": True},
        env={},
        config_file=config,
    )


@pytest.fixture
async def preset_client(
    preset_settings: Settings, fake_engine: FakeEngine
) -> AsyncIterator[httpx.AsyncClient]:
    async with SdrestService(preset_settings, engine=fake_engine) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_preset_defaults_apply_under_client_fields(
    preset_client: httpx.AsyncClient, fake_engine: FakeEngine, models_dir: Path
) -> None:
    resp = await preset_client.post(
        "/sdcpp/v1/img_gen", json={"height": 128, "sample_params": {"sample_steps": 2}}
    )
    assert resp.status_code == 202, resp.text
    for _ in range(200):
        if fake_engine.calls:
            break
        await asyncio.sleep(0.01)
    plan = fake_engine.calls[0]
    assert (plan.request.width, plan.request.height) == (96, 128)
    assert plan.request.sample_params.sample_steps == 2  # the client's value wins
    assert plan.request.sample_params.sample_method == "euler"  # the preset's default
    assert plan.request.vae_tiling_params.enabled is True  # the server's default
    assert plan.model.name == "fast"
    assert Path(plan.model.model_path).name == "tiny.safetensors"
    assert Path(plan.model.vae_path) == (models_dir / "vae" / "ae.safetensors").resolve()
    caps = (await preset_client.get("/sdcpp/v1/capabilities")).json()
    assert caps["model"]["name"] == "fast"
    assert caps["defaults"]["width"] == 96
    assert caps["defaults"]["sample_params"]["sample_steps"] == 3
    assert caps["defaults"]["vae_tiling_params"]["enabled"] is True  # --vae-tiling
