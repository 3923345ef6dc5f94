"""``sdrest pull``: files from a (local, fake) Hugging Face hub into the typed folders, presets
for multi-file families, resume, checksums, and the decisions of :mod:`sdrest.models.pull`."""

from __future__ import annotations

import hashlib
import io
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from sdrest.cli import build_parser
from sdrest.cli_pull import pull_command
from sdrest.errors import (
    ChecksumMismatchError,
    ConflictError,
    DownloadError,
    InvalidRequestError,
    ModelNotFoundError,
)
from sdrest.models import ModelRegistry
from sdrest.models.hashing import HASH_CACHE, HashCache
from sdrest.models.hub import pull
from sdrest.models.pull import (
    ChoiceNeededError,
    PullOptions,
    PullStopped,
    RemoteFile,
    add_preset_to_config,
    choose_files,
    parse_ref,
    preset_name,
)
from sdrest.settings import load_settings
from tests.hub_server import FakeHub, add_family, model_files

pytestmark = pytest.mark.slow  # starts processes or servers: scripts/test runs it


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return model_files(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", fake.start())
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield fake
    fake.stop()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


# -- the decisions -------------------------------------------------------------------------


def test_parse_ref() -> None:
    assert parse_ref("acme/tiny").repo == "acme/tiny"
    assert parse_ref("acme/tiny/sub/x.gguf").files == ("sub/x.gguf",)
    assert parse_ref("https://huggingface.co/acme/tiny/blob/main/x.gguf", ["y.gguf"]).files == (
        "x.gguf",
        "y.gguf",
    )
    for bad in ("tiny", "acme/..", "/", "acme/tiny/../x", "ac me/tiny"):
        with pytest.raises(InvalidRequestError):
            parse_ref(bad)


def test_choose_files() -> None:
    listing = [RemoteFile("a.safetensors", 1), RemoteFile("b.gguf", 2), RemoteFile("README.md", 3)]
    with pytest.raises(ChoiceNeededError) as choice:
        choose_files(listing, [], False, "acme/x")
    assert [f.path for f in choice.value.files] == ["a.safetensors", "b.gguf"]
    every = choose_files(listing, [], True, "acme/x")
    assert [f.path for f in every] == ["a.safetensors", "b.gguf"]
    assert choose_files(listing, ["b.gguf"], False, "acme/x") == [listing[1]]
    assert choose_files(listing[:1], [], False, "acme/x") == listing[:1]


def test_preset_is_appended_and_never_replaced(tmp_path: Path) -> None:
    config = tmp_path / "sdrest.toml"
    config.write_text('# mine\nport = 9000\n\n[presets.a]\nmodel = "x"\n')
    assert add_preset_to_config(config, "b c", {"diffusion_model": 'd"q', "vae": "v"}, "why")
    assert not add_preset_to_config(config, "a", {"diffusion_model": "other"})
    text = config.read_text()
    assert text.startswith('# mine\nport = 9000\n\n[presets.a]\nmodel = "x"\n')
    parsed = tomllib.loads(text)
    assert parsed["presets"]["a"] == {"model": "x"}
    assert parsed["presets"]["b c"] == {"diffusion_model": 'd"q', "vae": "v"}
    assert preset_name("acme/a", {"a"}) == "a-preset"


# -- pulls ---------------------------------------------------------------------------------


def test_single_file_goes_to_its_typed_folder(
    hub: FakeHub, weights: dict[str, bytes], models: Path
) -> None:
    hub.add("acme/upscalers", "x2/RealESRGAN_x2.safetensors", weights["upscaler.safetensors"])
    hub.add("acme/upscalers", "README.md", b"hi")
    seen: list[tuple[int, int]] = []
    outcome = pull(
        parse_ref("acme/upscalers"),
        PullOptions(models_dir=models),
        lambda done, total: seen.append((done, total)),
    )
    target = models / "esrgan" / "RealESRGAN_x2.safetensors"
    assert target.read_bytes() == weights["upscaler.safetensors"]
    assert outcome.files(models) == ["esrgan/RealESRGAN_x2.safetensors"]
    assert outcome.preset is None
    size = len(weights["upscaler.safetensors"])
    assert seen[-1] == (size, size)
    assert not (models / ".downloads").exists()  # the staging folder is gone
    # Pulled again: found in place, not downloaded twice.
    count = len(hub.downloads("x2/RealESRGAN_x2.safetensors"))
    again = pull(parse_ref("acme/upscalers"), PullOptions(models_dir=models))
    assert again.placed[0].existed and "already there" in again.messages[0]
    assert len(hub.downloads("x2/RealESRGAN_x2.safetensors")) == count


def test_family_writes_a_preset(
    hub: FakeHub, weights: dict[str, bytes], models: Path, tmp_path: Path
) -> None:
    add_family(hub, weights)
    (models / "unet").mkdir()  # an existing folder of the type is used, not a second one
    config = tmp_path / "sdrest.toml"
    config.write_text('[presets.klein-mini]\nmodel = "mine"\n')  # taken: never replaced
    options = PullOptions(models_dir=models, config_file=config, all_files=True)
    outcome = pull(parse_ref("acme/klein-mini"), options)
    assert sorted(outcome.files(models)) == [
        "text_encoders/qwen_3_4b.safetensors",
        "unet/klein_mini.safetensors",
        "vae/flux2-vae.safetensors",
    ]
    assert outcome.preset == "klein-mini-preset" and outcome.preset_written
    presets = tomllib.loads(config.read_text())["presets"]
    assert presets["klein-mini"] == {"model": "mine"}
    assert presets["klein-mini-preset"] == {
        "diffusion_model": "klein_mini",
        "vae": "flux2-vae",
        "llm": "qwen_3_4b",
    }
    # The preset loads and its components resolve in the registry.
    settings = load_settings({"models_dir": str(models)}, env={}, config_file=config)
    registry = ModelRegistry(models, settings.presets)
    assert "klein-mini-preset" not in registry.scan().preset_errors
    assert registry.main_entry("klein-mini-preset").name == "klein_mini"
    assert any("written to" in m for m in outcome.messages)


def test_several_weight_files_need_a_choice(
    hub: FakeHub, weights: dict[str, bytes], models: Path
) -> None:
    add_family(hub, weights)
    with pytest.raises(ChoiceNeededError):
        pull(parse_ref("acme/klein-mini"), PullOptions(models_dir=models))
    assert not any(models.iterdir())


def test_interrupted_download_resumes_with_range(
    hub: FakeHub, weights: dict[str, bytes], models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_hub writes (and so resumes from) whole chunks: make them smaller than the file.
    monkeypatch.setattr(hub_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    path = "split_files/diffusion_models/klein_mini.safetensors"
    add_family(hub, weights)
    hub.drop_once.add(path)
    outcome = pull(parse_ref(f"acme/klein-mini/{path}"), PullOptions(models_dir=models))
    target = models / "diffusion_models" / "klein_mini.safetensors"
    assert target.read_bytes() == weights["dit.safetensors"]
    gets = hub.downloads(path)
    assert len(gets) == 2 and gets[0].range is None
    half = len(weights["dit.safetensors"]) // 2
    assert gets[1].range is not None and gets[1].range.startswith("bytes=")
    assert half - 64 * 1024 < int(gets[1].range[6:-1]) <= half  # where the first one stopped
    assert "no preset" in outcome.messages[-1]  # a diffusion model alone makes no preset


def test_checksum_mismatch_is_refused_and_deleted(
    hub: FakeHub, weights: dict[str, bytes], models: Path
) -> None:
    hub.add("acme/upscalers", "x2.safetensors", weights["upscaler.safetensors"])
    hub.corrupt.add("x2.safetensors")
    with pytest.raises(ChecksumMismatchError, match="SHA-256"):
        pull(parse_ref("acme/upscalers"), PullOptions(models_dir=models))
    leftovers = [p for p in models.rglob("*") if p.is_file()]
    assert leftovers == []
    # The next pull downloads it again (nothing half-trusted was kept).
    hub.corrupt.clear()
    pull(parse_ref("acme/upscalers"), PullOptions(models_dir=models))
    assert (models / "esrgan" / "x2.safetensors").read_bytes() == weights["upscaler.safetensors"]


def test_errors_and_a_file_in_the_way(
    hub: FakeHub, weights: dict[str, bytes], models: Path
) -> None:
    with pytest.raises(ModelNotFoundError, match="no repository"):
        pull(parse_ref("acme/ghost"), PullOptions(models_dir=models))
    hub.add("acme/upscalers", "x2.safetensors", weights["upscaler.safetensors"])
    hub.fail.add("x2.safetensors")
    with pytest.raises(DownloadError, match="500"):
        pull(parse_ref("acme/upscalers"), PullOptions(models_dir=models))
    hub.fail.clear()
    with pytest.raises(PullStopped):
        pull(parse_ref("acme/upscalers"), PullOptions(models_dir=models), None, lambda: True)
    (models / "esrgan").mkdir()
    (models / "esrgan" / "x2.safetensors").write_bytes(b"someone else's file")
    with pytest.raises(ConflictError, match="not overwritten"):
        pull(parse_ref("acme/upscalers"), PullOptions(models_dir=models))
    assert (models / "esrgan" / "x2.safetensors").read_bytes() == b"someone else's file"
    assert (models / ".downloads" / "acme--upscalers" / "x2.safetensors").is_file()


def test_cli_pull(hub: FakeHub, weights: dict[str, bytes], models: Path, tmp_path: Path) -> None:
    add_family(hub, weights)
    config = tmp_path / "sdrest.toml"
    config.write_text("")
    data = {"data_dir": str(tmp_path / "data")}  # the hash cache goes there
    settings = load_settings({"models_dir": str(models), **data}, env={}, config_file=config)
    out = io.StringIO()
    args = build_parser().parse_args(["pull", "acme/klein-mini", "--models-dir", str(models)])
    assert pull_command(args, settings, out, env={}) == 2
    assert "sdrest pull acme/klein-mini/split_files/vae/flux2-vae.safetensors" in out.getvalue()
    out, before = io.StringIO(), len(hub.requests)
    argv = ["pull", "acme/klein-mini", "--all", "--token", "hf_secret", "--config", str(config)]
    assert pull_command(build_parser().parse_args(argv), settings, out, env={}) == 0
    assert "preset 'klein-mini' written to" in out.getvalue()
    assert "klein-mini" in tomllib.loads(config.read_text())["presets"]
    assert all(r.authorization == "Bearer hf_secret" for r in hub.requests[before:])
    # Each file was hashed once, to check it: the server's hash cache has it from the pull.
    cache = HashCache(settings.data_path / HASH_CACHE)
    vae = models / "vae" / "flux2-vae.safetensors"
    assert cache.sha256_of(vae) == hashlib.sha256(vae.read_bytes()).hexdigest()
    # No config file: the preset is printed for the user to paste.
    out = io.StringIO()
    other = tmp_path / "other"
    args = build_parser().parse_args(["pull", "acme/klein-mini", "--all"])
    settings = load_settings({"models_dir": str(other), **data}, env={})
    assert pull_command(args, settings, out, env={}) == 0
    assert "[presets.klein-mini]" in out.getvalue()
