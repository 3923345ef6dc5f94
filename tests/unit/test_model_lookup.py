"""THE model lookup (``ModelRegistry.find``/``main_entry``): every spelling a family accepts, and
errors that are part of the one error tree (404 ``model_not_found``, 400 for path tricks)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sdrest.errors import InvalidRequestError, ModelNotFoundError, NotFoundError
from sdrest.models import (
    ModelEntry,
    ModelPreset,
    ModelRegistry,
    PathNotAllowedError,
    UnknownModelError,
)
from tests.unit.support import write_safetensors

SD1 = {
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
FLUX = {"double_blocks.0.img_attn.qkv.weight": [4, 8], "single_blocks.0.linear1.weight": [4, 8]}
VAE = {"decoder.conv_in.weight": [512, 16, 3, 3]}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    models = tmp_path / "models"
    write_safetensors(models / "checkpoints" / "sd15.safetensors", SD1)
    write_safetensors(models / "diffusion_models" / "flux-dev.safetensors", FLUX)
    write_safetensors(models / "vae" / "ae.safetensors", VAE)
    presets = {
        "combo": ModelPreset(name="combo", diffusion_model="flux-dev", vae="ae"),
        "empty": ModelPreset(name="empty", vae="ae"),
    }
    registry = ModelRegistry(models, presets, hash_cache_path=tmp_path / "hashes.json")
    registry.scan()
    return registry


def test_find_accepts_name_file_name_relative_path_and_preset(registry: ModelRegistry) -> None:
    by_name = registry.find("sd15")
    assert isinstance(by_name, ModelEntry) and by_name.type == "checkpoint"
    assert registry.find("sd15.safetensors") == by_name
    assert registry.find("checkpoints/sd15.safetensors") == by_name
    preset = registry.find("combo")
    assert isinstance(preset, ModelPreset) and preset.name == "combo"
    assert registry.find("combo", "preset") == preset
    assert isinstance(registry.find("ae", "vae"), ModelEntry)


def test_find_accepts_a_sha256_prefix_once_hashed(registry: ModelRegistry) -> None:
    entry = registry.get("sd15")
    digest = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
    with pytest.raises(UnknownModelError):
        registry.find(digest[:10])  # not hashed yet: not known by its hash
    registry.hashes.compute(entry.path)
    assert registry.find(digest[:10]) == entry
    assert registry.find(digest.upper()) == entry
    with pytest.raises(UnknownModelError):
        registry.find(digest[:7])  # shorter than 8 digits is a name, not a hash


def test_unknown_names_are_404_model_not_found_with_close_names(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        registry.find("sd16")
    error = caught.value
    assert isinstance(error, NotFoundError) and isinstance(error, LookupError)
    assert (error.status, error.code) == (404, "model_not_found")
    assert "sd15" in error.message  # "did you mean"
    with pytest.raises(UnknownModelError, match="unknown preset"):
        registry.find("sd15", "preset")  # a file is not a preset


def test_path_tricks_are_400_in_the_error_tree(registry: ModelRegistry) -> None:
    with pytest.raises(PathNotAllowedError) as caught:
        registry.resolve_relative("lora", "../checkpoints/sd15.safetensors")
    assert isinstance(caught.value, InvalidRequestError) and caught.value.status == 400
    assert isinstance(caught.value, ValueError)  # older callers catch ValueError


def test_main_entry_of_a_file_and_of_a_preset(registry: ModelRegistry) -> None:
    assert registry.main_entry("sd15").name == "sd15"
    assert registry.main_entry("combo").name == "flux-dev"
    with pytest.raises(UnknownModelError, match="names no model file"):
        registry.main_entry("empty")
