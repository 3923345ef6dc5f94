"""From a request to a plan, before anything is queued: the default model, unknown names, preset
defaults, limits and LoRA paths (a registry over fake model files, no service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from sdrest import model_specs, planning
from sdrest.errors import InvalidRequestError, NotFoundError
from sdrest.models import ModelRegistry
from sdrest.schemas import ImgGenRequest
from sdrest.settings import Settings, load_settings
from tests.conftest import settings_in
from tests.fakes import write_fake_checkpoint, write_fake_lora, write_safetensors_header


def registry_for(settings: Settings, tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(
        settings.models_path, settings.presets, hash_cache_path=tmp_path / "hashes.json"
    )
    registry.scan()
    return registry


def request(**fields: Any) -> ImgGenRequest:
    body = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 2}}
    return msgspec.convert({**body, **fields}, ImgGenRequest)


@pytest.fixture
def registry(settings: Settings, tmp_path: Path) -> ModelRegistry:
    return registry_for(settings, tmp_path)


# -- the model ---------------------------------------------------------------------------------


def test_the_only_model_is_the_default(settings: Settings, registry: ModelRegistry) -> None:
    assert model_specs.default_model_name(settings, registry) == "tiny"
    spec = model_specs.model_spec("tiny", settings, registry)
    assert spec.name == "tiny" and Path(spec.model_path).name == "tiny.safetensors"
    assert spec.lora_dir == str(settings.models_path / "lora")


def test_the_configured_default_wins_and_several_models_pick_one(
    tmp_path: Path, models_dir: Path
) -> None:
    write_fake_checkpoint(models_dir / "checkpoints" / "other.safetensors")
    unnamed = settings_in(tmp_path, models_dir)
    registry = registry_for(unnamed, tmp_path)
    # Several and no --model: the most recently loaded one, else the first by name.
    assert model_specs.default_model_name(unnamed, registry) == "other"
    assert model_specs.default_model_name(unnamed, registry, recent="tiny") == "tiny"
    assert model_specs.default_model_name(unnamed, registry, recent="gone") == "other"
    named = settings_in(tmp_path, models_dir, model="other")
    assert model_specs.default_model_name(named, registry) == "other"


def test_no_model_at_all_is_a_400_naming_the_folder(tmp_path: Path) -> None:
    empty = settings_in(tmp_path, tmp_path / "empty")
    with pytest.raises(InvalidRequestError, match="no model available") as refused:
        model_specs.default_model_name(empty, registry_for(empty, tmp_path))
    assert str(empty.models_path) in refused.value.message


def test_an_unknown_model_is_a_404_naming_the_field(
    settings: Settings, registry: ModelRegistry
) -> None:
    with pytest.raises(NotFoundError) as refused:
        planning.plan_generation(request(), "no-such-model", settings, registry)
    assert refused.value.status == 404 and refused.value.field == "model"
    with pytest.raises(NotFoundError):
        model_specs.model_spec("no-such-model", settings, registry)


def test_a_lora_is_not_a_model_that_generates(settings: Settings, registry: ModelRegistry) -> None:
    with pytest.raises(InvalidRequestError, match="not a model that generates") as refused:
        model_specs.model_spec("style", settings, registry)
    assert refused.value.status == 400 and refused.value.field == "model"


def test_the_plan_keeps_the_request_and_picks_a_seed(
    settings: Settings, registry: ModelRegistry
) -> None:
    fixed = planning.plan_generation(request(seed=42), "tiny", settings, registry)
    assert fixed.seed == 42 and fixed.request.prompt == "a cat" and fixed.model.name == "tiny"
    drawn = planning.plan_generation(request(seed=-1), "tiny", settings, registry)
    assert 0 <= drawn.seed < 2**31


# -- preset defaults ---------------------------------------------------------------------------


@pytest.fixture
def preset_settings(tmp_path: Path, models_dir: Path) -> Settings:
    write_safetensors_header(models_dir / "vae" / "ae.safetensors", ["decoder.conv_in.weight"])
    config = tmp_path / "sdrest.toml"
    config.write_text(
        "[presets.fast]\n"
        'model = "tiny"\nvae = "ae"\n'
        "defaults = { width = 96, sample_params = { sample_steps = 3 },"
        " vae_tiling_params = { tile_size_x = 32 } }\n"
        "[presets.untiled]\n"
        'model = "tiny"\n'
        "defaults = { vae_tiling_params = { enabled = false } }\n"
    )
    return load_settings(
        {"models_dir": str(models_dir), "data_dir": str(tmp_path / "data"), "vae_tiling": True},
        env={},
        config_file=config,
    )


def test_preset_defaults_layer_over_the_server_defaults(
    preset_settings: Settings, tmp_path: Path
) -> None:
    registry = registry_for(preset_settings, tmp_path)
    # A plain model: only the server-wide default (vae_tiling = true).
    assert planning.request_defaults("tiny", preset_settings, registry) == {
        "vae_tiling_params": {"enabled": True}
    }
    # A preset: its defaults merged over the server's, nested tables field by field.
    assert planning.request_defaults("fast", preset_settings, registry) == {
        "vae_tiling_params": {"enabled": True, "tile_size_x": 32},
        "width": 96,
        "sample_params": {"sample_steps": 3},
    }
    # A preset's own value wins over the server's.
    assert planning.request_defaults("untiled", preset_settings, registry) == {
        "vae_tiling_params": {"enabled": False}
    }


def test_without_server_defaults_a_plain_model_has_none(
    settings: Settings, registry: ModelRegistry
) -> None:
    assert planning.request_defaults("tiny", settings, registry) == {}


def test_a_preset_resolves_its_component_files(preset_settings: Settings, tmp_path: Path) -> None:
    registry = registry_for(preset_settings, tmp_path)
    spec = model_specs.model_spec("fast", preset_settings, registry)
    assert spec.name == "fast"
    assert Path(spec.model_path).name == "tiny.safetensors"
    assert Path(spec.vae_path) == preset_settings.models_path / "vae" / "ae.safetensors"


# -- limits ------------------------------------------------------------------------------------


@pytest.fixture
def small_limits(tmp_path: Path, models_dir: Path) -> Settings:
    return settings_in(tmp_path, models_dir, max_size=256, max_batch=2, max_steps=10)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 320}, "width"),
        ({"height": 257}, "height"),
        ({"width": 32}, "width"),  # under the default min_size of 64
        ({"batch_count": 3}, "batch_count"),
        ({"sample_params": {"sample_steps": 11}}, "sample_params.sample_steps"),
        ({"hires": {"enabled": True, "scale": 8.0}}, "hires"),
    ],
)
def test_requests_past_the_limits_are_refused(
    small_limits: Settings, tmp_path: Path, fields: dict[str, Any], field: str
) -> None:
    registry = registry_for(small_limits, tmp_path)
    with pytest.raises(InvalidRequestError) as refused:
        planning.plan_generation(request(**fields), "tiny", small_limits, registry)
    assert refused.value.status == 400 and refused.value.field == field


def test_requests_at_the_limits_pass(small_limits: Settings, tmp_path: Path) -> None:
    registry = registry_for(small_limits, tmp_path)
    at_bounds = request(width=256, height=64, batch_count=2, sample_params={"sample_steps": 10})
    plan = planning.plan_generation(at_bounds, "tiny", small_limits, registry)
    assert (plan.request.width, plan.request.height) == (256, 64)


# -- LoRAs -------------------------------------------------------------------------------------


def _lora(path: str) -> ImgGenRequest:
    return request(lora=[{"path": path, "multiplier": 0.5}])


@pytest.mark.parametrize("name", ["style", "style.safetensors"])
def test_a_lora_by_registry_name_or_file_in_the_lora_folder(
    settings: Settings, registry: ModelRegistry, name: str
) -> None:
    plan = planning.plan_generation(_lora(name), "tiny", settings, registry)
    [lora] = plan.loras
    assert Path(lora.path) == settings.models_path / "lora" / "style.safetensors"
    assert lora.multiplier == 0.5


@pytest.mark.parametrize(
    "path",
    ["../checkpoints/tiny.safetensors", "/etc/passwd", "sub/../../checkpoints/tiny.safetensors"],
)
def test_a_lora_outside_the_lora_folder_is_refused(
    settings: Settings, registry: ModelRegistry, path: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        planning.plan_generation(_lora(path), "tiny", settings, registry)
    assert refused.value.status == 400 and refused.value.field == "lora[0].path"


def test_a_symlink_leading_out_of_the_lora_folder_is_refused(
    settings: Settings, registry: ModelRegistry, tmp_path: Path
) -> None:
    # Made after the scan: not a registry LoRA (files the admin links in are), so the request's
    # path is resolved, symlink included, and must stay inside the folder.
    outside = write_fake_lora(tmp_path / "elsewhere" / "x.safetensors")
    (settings.models_path / "lora" / "escape.safetensors").symlink_to(outside)
    with pytest.raises(InvalidRequestError, match="outside") as refused:
        planning.plan_generation(_lora("escape.safetensors"), "tiny", settings, registry)
    assert refused.value.status == 400 and refused.value.field == "lora[0].path"


def test_an_unknown_lora_is_a_404(settings: Settings, registry: ModelRegistry) -> None:
    with pytest.raises(NotFoundError) as refused:
        planning.plan_generation(_lora("missing"), "tiny", settings, registry)
    assert refused.value.field == "lora[0].path"
