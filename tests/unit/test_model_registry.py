"""Scanning the models folder, names, presets, safe path resolution, hashing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sdrest.models import ModelPreset, ModelRegistry, PathNotAllowedError, UnknownModelError
from sdrest.models.hashing import sha256_file
from tests.fakes import write_fake_checkpoint, write_fake_lora, write_safetensors_header


@pytest.fixture
def root(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    write_fake_checkpoint(models / "checkpoints" / "alpha.safetensors")
    write_fake_checkpoint(models / "beta.safetensors")  # loose: typed by its header
    write_fake_lora(models / "lora" / "style.safetensors")
    write_fake_lora(models / "lora" / "sub" / "style.safetensors")  # duplicate name
    write_safetensors_header(models / "vae" / "ae.safetensors", ["decoder.conv_in.weight"])
    (models / "checkpoints" / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    (models / "notes.txt").write_text("not a model")
    return models


def test_scan_types_and_detection(root: Path) -> None:
    registry = ModelRegistry(root)
    report = registry.scan()
    assert report.count == 6
    by_name = {(e.type, e.name): e for e in registry.entries()}
    assert by_name[("checkpoint", "alpha")].architecture == "flux2"
    assert by_name[("checkpoint", "beta")].relpath == "beta.safetensors"
    assert by_name[("vae", "ae")].role == "vae"
    broken = by_name[("checkpoint", "broken")]
    assert broken.architecture == "unknown" and broken.error
    assert any("'style' is not unique" in w for w in report.warnings)
    assert [m.name for m in registry.generation_models()] == ["beta", "alpha"] or {
        m.name for m in registry.generation_models()
    } == {"alpha", "beta"}


def test_get_suggests_close_names(root: Path) -> None:
    registry = ModelRegistry(root)
    registry.scan()
    with pytest.raises(UnknownModelError, match="alpha"):
        registry.get("alpah")
    assert registry.get("style", type="lora").relpath == os.path.join("lora", "style.safetensors")


@pytest.mark.parametrize(
    "path",
    [
        "../checkpoints/alpha.safetensors",
        "/etc/passwd",
        "sub/../../vae/ae.safetensors",
        "escape.safetensors",
    ],
)
def test_resolve_relative_never_leaves_the_folder(root: Path, path: str) -> None:
    (root / "lora" / "escape.safetensors").symlink_to(root / "vae" / "ae.safetensors")
    registry = ModelRegistry(root)
    with pytest.raises(PathNotAllowedError):
        registry.resolve_relative("lora", path)


def test_resolve_relative_inside(root: Path) -> None:
    registry = ModelRegistry(root)
    assert registry.resolve_relative("lora", "sub/style.safetensors").name == "style.safetensors"
    with pytest.raises(UnknownModelError):
        registry.resolve_relative("lora", "missing.safetensors")


def test_presets_are_checked_not_fatal(root: Path) -> None:
    presets = {
        "good": ModelPreset(name="good", diffusion_model="alpha", vae="ae"),
        "bad": ModelPreset(name="bad", vae="nope"),
    }
    registry = ModelRegistry(root, presets)
    report = registry.scan()
    assert any("preset 'bad'" in w for w in report.warnings)
    assert not any("preset 'good'" in w for w in report.warnings)
    assert {"good", "bad"} <= {m.name for m in registry.generation_models()}


def test_background_hashing_and_cache(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hashes.json"
    registry = ModelRegistry(root, hash_cache_path=cache)
    registry.scan()
    assert registry.sha256("alpha") is None
    registry.start_hashing()
    registry.wait_for_hashes(30)
    expected = sha256_file(root / "checkpoints" / "alpha.safetensors")
    assert registry.sha256("alpha") == expected
    assert registry.short_hash("alpha") == expected[:10]
    again = ModelRegistry(root, hash_cache_path=cache)  # persisted
    again.scan()
    assert again.sha256("alpha") == expected
    target = root / "checkpoints" / "alpha.safetensors"
    os.utime(target, (time.time() + 10, time.time() + 10))
    assert again.sha256("alpha") is None  # changed mtime: a miss, rehashed later
