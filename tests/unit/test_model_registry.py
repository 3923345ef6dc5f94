"""Scanning the models folder: types, bad files, duplicates, presets, safe paths and hashes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from pathlib import Path

import pytest

from sdrest.models import (
    HashCache,
    HashWorker,
    ModelPreset,
    ModelRegistry,
    PathNotAllowedError,
    UnknownModelError,
    short_hash,
)
from tests.unit.support import write_gguf, write_safetensors

FLUX = {"double_blocks.0.img_attn.qkv.weight": [4, 8], "single_blocks.0.linear1.weight": [4, 8]}
SD1 = {
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
LORA = {"x.lora_down.weight": [4, 8], "x.lora_up.weight": [8, 4]}
VAE = {"decoder.conv_in.weight": [512, 16, 3, 3]}
CLIP_L = {"text_model.encoder.layers.0.mlp.fc1.weight": [3072, 768]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    write_safetensors(models / "checkpoints" / "sd15.safetensors", SD1)
    write_gguf(models / "diffusion_models" / "flux-dev.gguf", FLUX)
    write_safetensors(models / "Lora" / "style.safetensors", LORA)  # A1111 capitalisation
    write_safetensors(models / "Lora" / "sub" / "style.safetensors", LORA)  # duplicate name
    write_safetensors(models / "Lora" / "sub" / "other.safetensors", LORA)
    write_safetensors(models / "ae.sft", VAE)  # loose: typed by its header
    write_safetensors(models / "misc" / "clip_l.safetensors", CLIP_L)  # unknown folder
    write_safetensors(models / "vae" / "not-a-vae.safetensors", LORA)  # the folder decides type
    write_safetensors(models / "ESRGAN" / "x2.safetensors", {"conv_first.weight": [64, 3, 3, 3]})
    (models / "notes.txt").write_text("not a model")
    (models / "checkpoints" / ".sd15.safetensors.partial").write_bytes(b"half")
    return models


def _by_key(registry: ModelRegistry) -> dict[tuple[str, str], object]:
    return {(e.type, e.relpath): e for e in registry.entries()}


def test_scan_types_from_folders_and_headers(root: Path) -> None:
    registry = ModelRegistry(root)
    report = registry.scan()
    assert report.count == 9 and report.errors == 0
    got = {(e.relpath, e.type, e.architecture, e.role, e.format) for e in registry.entries()}
    assert got == {
        ("checkpoints/sd15.safetensors", "checkpoint", "sd1", "checkpoint", "safetensors"),
        ("diffusion_models/flux-dev.gguf", "diffusion_model", "flux", "diffusion_model", "gguf"),
        ("Lora/style.safetensors", "lora", "unknown", "lora", "safetensors"),
        ("Lora/sub/style.safetensors", "lora", "unknown", "lora", "safetensors"),
        ("Lora/sub/other.safetensors", "lora", "unknown", "lora", "safetensors"),
        ("ae.sft", "vae", "vae", "vae", "safetensors"),
        ("misc/clip_l.safetensors", "text_encoder", "clip_l", "text_encoder", "safetensors"),
        ("vae/not-a-vae.safetensors", "vae", "unknown", "lora", "safetensors"),
        ("ESRGAN/x2.safetensors", "upscaler", "esrgan", "upscaler", "safetensors"),
    }
    entry = registry.get("flux-dev")
    assert entry.path == str(root / "diffusion_models" / "flux-dev.gguf")
    assert entry.size == (root / "diffusion_models" / "flux-dev.gguf").stat().st_size
    assert [e.name for e in registry.entries("lora")] == ["style", "other", "style"]


def test_bad_files_are_listed_as_unknown_with_an_error(tmp_path: Path) -> None:
    models = tmp_path / "models"
    good = write_safetensors(models / "good.safetensors", SD1)
    (models / "checkpoints").mkdir()
    (models / "checkpoints" / "empty.safetensors").write_bytes(b"")
    (models / "checkpoints" / "garbage.gguf").write_bytes(os.urandom(4096))
    (models / "checkpoints" / "truncated.safetensors").write_bytes(good.read_bytes()[:40])
    (models / "hostile.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    (models / "evil.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**60, 2**60))
    (models / "junk.pth").write_bytes(b"plain text, not a pickle")
    (models / "dangling.safetensors").symlink_to(tmp_path / "nowhere.safetensors")
    registry = ModelRegistry(models)
    report = registry.scan()  # must not raise
    assert report.count == 8 and report.errors == 7
    bad = [e for e in registry.entries() if e.error]
    assert {e.name for e in bad} == {
        "empty",
        "garbage",
        "truncated",
        "hostile",
        "evil",
        "junk",
        "dangling",
    }
    for entry in bad:
        assert (entry.architecture, entry.role) == ("unknown", "unknown"), entry
    assert registry.get("empty").type == "checkpoint"  # the folder still types it
    assert registry.get("hostile").type == "unknown"
    assert "100 MB" in (registry.get("hostile").error or "")
    assert [m.name for m in registry.generation_models()] == ["good"]


def test_rescan_sees_new_changed_and_removed_files(root: Path) -> None:
    registry = ModelRegistry(root)
    registry.scan()
    write_safetensors(root / "checkpoints" / "new.safetensors", SD1)
    (root / "ESRGAN" / "x2.safetensors").unlink()
    changed = root / "ae.sft"
    write_safetensors(changed, FLUX)  # same name, now a Flux diffusion model
    os.utime(changed, ns=(1, 10**18))
    report = registry.scan()
    assert report.count == 9
    assert registry.get("new").architecture == "sd1"
    assert registry.get("ae").type == "diffusion_model"
    with pytest.raises(UnknownModelError):
        registry.get("x2")


def test_duplicates_are_reported_and_logged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = ModelRegistry(root)
    with caplog.at_level(logging.WARNING, logger="sdrest.models.registry"):
        report = registry.scan()
    expected = {"lora/style": ["Lora/style.safetensors", "Lora/sub/style.safetensors"]}
    assert report.duplicates == registry.duplicates == expected
    assert any("not unique" in w and "style" in w for w in report.warnings)
    assert any("not unique" in r.getMessage() for r in caplog.records)
    # The shallowest file wins, predictably.
    assert registry.get("style", "lora").relpath == "Lora/style.safetensors"


def test_get_lists_close_names_and_prefers_generation_models(root: Path) -> None:
    registry = ModelRegistry(root)
    registry.scan()
    with pytest.raises(UnknownModelError, match="did you mean 'flux-dev'"):
        registry.get("flux-de")
    with pytest.raises(UnknownModelError, match="unknown lora model 'flux-dev'"):
        registry.get("flux-dev", "lora")
    write_safetensors(root / "Lora" / "sd15.safetensors", LORA)
    registry.scan()
    assert registry.get("sd15").type == "checkpoint"
    assert registry.get("sd15", "lora").type == "lora"
    assert registry.get("sd15.safetensors", "lora").relpath == "Lora/sd15.safetensors"


def test_resolve_relative_accepts_names_and_inner_paths(root: Path) -> None:
    registry = ModelRegistry(root)
    registry.scan()
    lora_dir = (root / "Lora").resolve()
    assert registry.resolve_relative("lora", "other") == lora_dir / "sub" / "other.safetensors"
    assert (
        registry.resolve_relative("lora", "sub/style.safetensors")
        == lora_dir / "sub" / "style.safetensors"
    )
    assert registry.resolve_relative("lora", "sub/style") == lora_dir / "sub" / "style.safetensors"
    with pytest.raises(UnknownModelError):
        registry.resolve_relative("lora", "sub/missing.safetensors")


@pytest.mark.parametrize(
    "path",
    [
        "../checkpoints/sd15.safetensors",
        "../../outside.safetensors",
        "sub/../../vae/not-a-vae.safetensors",
        "/etc/passwd",
        str(Path("/etc/passwd")),
        "\\windows\\system.ini",
        "C:\\x.safetensors",
        "escape.safetensors",
        "escape",
        "nul\x00.safetensors",
    ],
)
def test_resolve_relative_refuses_escapes(root: Path, path: str) -> None:
    outside = write_safetensors(root.parent / "outside.safetensors", LORA)
    (root / "Lora" / "escape.safetensors").symlink_to(outside)
    registry = ModelRegistry(root)
    registry.scan()
    registry_names = {e.name for e in registry.entries("lora")}
    assert "escape" in registry_names  # listed (the admin put it there) ...
    with pytest.raises((PathNotAllowedError, UnknownModelError)) as caught:
        if path.startswith("escape"):
            # ... but a user-supplied path through the link is refused.
            registry.resolve_relative("lora", "./" + path)
        else:
            registry.resolve_relative("lora", path)
    assert caught.type is PathNotAllowedError


@pytest.mark.parametrize("name", ["x" * 300, "x" * 5000, "sub/" + "y" * 300])
def test_names_longer_than_the_os_allows_name_no_file(root: Path, name: str) -> None:
    # Regression: is_file() raised ENAMETOOLONG, a 500 on every route that takes a LoRA or
    # component path (found probing the code where schemathesis found the NUL-byte 500).
    registry = ModelRegistry(root)
    registry.scan()
    with pytest.raises(UnknownModelError):
        registry.resolve_relative("lora", name)
    with pytest.raises(UnknownModelError):
        registry.resolve_component("vae", name)


def test_symlink_inside_the_folder_is_fine(root: Path) -> None:
    (root / "Lora" / "alias.safetensors").symlink_to(root / "Lora" / "sub" / "other.safetensors")
    registry = ModelRegistry(root)
    registry.scan()
    found = registry.resolve_relative("lora", "./alias.safetensors")
    assert found == (root / "Lora" / "sub" / "other.safetensors").resolve()


def test_presets_resolve_components_and_report_errors(root: Path) -> None:
    write_safetensors(root / "text_encoders" / "clip-l.safetensors", CLIP_L)
    good = ModelPreset(
        name="flux-preset",
        diffusion_model="flux-dev",
        vae="ae",
        clip_l="text_encoders/clip-l.safetensors",  # a path inside models_dir
        defaults={"width": 1024},
    )
    bad = ModelPreset(name="broken", diffusion_model="nope", vae="../../etc/passwd")
    empty = ModelPreset(name="empty")
    registry = ModelRegistry(root, {p.name: p for p in (good, bad, empty)})
    report = registry.scan()
    assert set(report.preset_errors) == {"broken", "empty"}
    assert "nope" in report.preset_errors["broken"]
    assert "inside the models folder" in report.preset_errors["broken"]
    assert registry.preset_error("broken") == report.preset_errors["broken"]
    assert registry.preset_error("flux-preset") is None
    assert registry.preset("flux-preset").defaults == {"width": 1024}
    assert registry.resolve_component("vae", "ae") == root / "ae.sft"
    with pytest.raises(UnknownModelError, match="did you mean 'flux-preset'"):
        registry.preset("flux-prest")
    names = [m.name for m in registry.generation_models()]
    assert names == ["sd15", "flux-dev", "flux-preset", "broken", "empty"]
    assert [p.name for p in registry.presets()] == ["flux-preset", "broken", "empty"]


def test_missing_models_dir_is_a_warning(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "nope")
    report = registry.scan()
    assert report.count == 0 and "does not exist" in report.warnings[0]
    assert registry.entries() == []


def test_hash_cache_hit_miss_and_persistence(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"x" * (3 * 1024 * 1024 + 5))  # more than one 1 MiB chunk
    expected = hashlib.sha256(model.read_bytes()).hexdigest()
    cache_file = tmp_path / "state" / "hashes.json"
    cache = HashCache(cache_file)
    assert cache.sha256_of(model) is None
    assert cache.compute(model) == expected
    assert cache.sha256_of(model) == expected
    assert short_hash(expected) == expected[:10]
    assert list(cache_file.parent.iterdir()) == [cache_file]  # the temp file was renamed away
    stored = json.loads(cache_file.read_text())
    assert stored[str(model.resolve())]["sha256"] == expected
    assert HashCache(cache_file).sha256_of(model) == expected  # survives a restart
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert HashCache(cache_file).sha256_of(model) is None  # mtime changed: a miss


def test_corrupt_hash_cache_starts_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        cache = HashCache(cache_file)
    assert "unreadable" in caplog.text
    model = tmp_path / "m.bin"
    model.write_bytes(b"abc")
    assert cache.compute(model) == hashlib.sha256(b"abc").hexdigest()


def test_hash_worker_completes_in_the_background(tmp_path: Path) -> None:
    files = []
    for i in range(5):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(bytes([i]) * 1000)
        files.append(f)
    cache = HashCache(tmp_path / "hashes.json")
    worker = HashWorker(cache)
    worker.start(files)
    assert worker.join(timeout=10)
    threads = [t for t in threading.enumerate() if t.name == "sdrest-hash"]
    assert threads == []
    for f in files:
        assert cache.sha256_of(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    worker.stop()  # idempotent when idle


def test_hash_worker_stop_interrupts(tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}.bin" for i in range(50)]
    for f in files:
        f.write_bytes(b"\0" * 200_000)
    worker = HashWorker(HashCache(None))
    worker.start(files)
    worker.stop()
    assert not worker.running
    assert sum(worker.cache.sha256_of(f) is not None for f in files) < 50


def test_registry_hashes(root: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(root, hash_cache_path=tmp_path / "hashes.json")
    registry.scan()
    assert registry.sha256("flux-dev") is None and registry.short_hash("flux-dev") is None
    assert registry.sha256("no-such-model") is None
    registry.start_hashing()
    assert registry.wait_for_hashes(timeout=10)
    registry.stop_hashing()
    data = (root / "diffusion_models" / "flux-dev.gguf").read_bytes()
    assert registry.sha256("flux-dev") == hashlib.sha256(data).hexdigest()
    assert registry.short_hash("flux-dev") == hashlib.sha256(data).hexdigest()[:10]
    again = ModelRegistry(root, hash_cache_path=tmp_path / "hashes.json")
    again.scan()
    assert again.sha256("style", "lora") is not None  # from the persisted cache
