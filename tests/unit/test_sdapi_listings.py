"""Pure shape builders of /sdapi/v1 listings, png-info and extras (no service, no HTTP)."""

from __future__ import annotations

import io
import math
from typing import Any

import msgspec
import pytest
from PIL import Image

from sdrest.api.sdapi import extras, info_memory, listings
from sdrest.api.sdapi.info_memory import memory_report, parse_meminfo
from sdrest.errors import InvalidRequestError
from sdrest.images import build_infotext
from sdrest.models import ModelEntry, ModelPreset

SHA = "0123456789abcdef" * 4


def _entry(name: str, type_: str, relpath: str, error: str | None = None) -> ModelEntry:
    return ModelEntry(
        name=name,
        type=type_,
        path=f"/srv/models/{relpath}",
        relpath=relpath,
        size=1,
        mtime=0.0,
        format="safetensors",
        architecture="flux2",
        role=type_,
        error=error,
    )


# -- listings ----------------------------------------------------------------------------------


def test_sd_models_titles_hashes_and_presets() -> None:
    models: list[ModelEntry | ModelPreset] = [
        _entry("hashed", "checkpoint", "checkpoints/hashed.safetensors"),
        _entry("pending", "checkpoint", "checkpoints/pending.gguf"),
        ModelPreset(name="klein", diffusion_model="diffusion_models/k.gguf"),
    ]
    items = listings.sd_models(
        models,
        {"hashed": SHA}.get,
        lambda name: f"{name}.title",
    )
    items = msgspec.to_builtins(items)  # the typed answers as they go on the wire
    assert items[0] == {
        "title": "hashed.title",
        "model_name": "hashed",
        "hash": SHA[:10],
        "sha256": SHA,
        "filename": "checkpoints/hashed.safetensors",
        "config": None,
    }
    assert items[1]["hash"] is None and items[1]["sha256"] is None  # still hashing
    assert items[2]["model_name"] == "klein"
    assert items[2]["filename"] == "diffusion_models/k.gguf"
    assert items[2]["hash"] is None
    # No absolute server path leaks into any listing.
    assert all("/srv" not in str(v) for item in items for v in item.values())


def test_sd_vae_lists_file_names() -> None:
    items = msgspec.to_builtins(listings.sd_vae([_entry("ae", "vae", "vae/ae.safetensors")]))
    assert items == [{"model_name": "ae.safetensors", "filename": "vae/ae.safetensors"}]


def test_loras_path_is_relative_to_the_lora_folder_and_broken_files_are_left_out() -> None:
    items = listings.loras(
        [
            _entry("style", "lora", "lora/sub/style.safetensors"),
            _entry("broken", "lora", "lora/broken.safetensors", error="bad header"),
        ]
    )
    items = msgspec.to_builtins(items)
    assert items == [
        {"name": "style", "alias": "style", "path": "sub/style.safetensors", "metadata": {}}
    ]


@pytest.mark.parametrize(
    ("names", "scale"),
    [
        (["conv_first.weight", "conv_up1.weight", "conv_up2.weight"], 4),
        (["conv_first.weight", "conv_up1.weight"], 2),
        (["model.0.weight", "model.3.weight"], None),
        ([], None),
    ],
)
def test_esrgan_scale_from_tensor_names(names: list[str], scale: int | None) -> None:
    assert listings.esrgan_scale(names) == scale


def test_upscalers_start_with_builtins_and_skip_unreadable_files() -> None:
    entries = [
        _entry("x2", "upscaler", "esrgan/x2.safetensors"),
        _entry("mystery", "upscaler", "esrgan/mystery.pth"),
        _entry("broken", "upscaler", "esrgan/broken.safetensors", error="garbage"),
    ]
    items = msgspec.to_builtins(listings.upscalers(entries, {"x2": 2, "mystery": None}))
    assert [i["name"] for i in items] == ["None", "Lanczos", "Nearest", "x2", "mystery"]
    assert items[0] == {
        "name": "None",
        "model_name": None,
        "model_path": None,
        "model_url": None,
        "scale": 4,
    }
    assert items[3]["scale"] == 2 and items[3]["model_path"] == "esrgan/x2.safetensors"
    assert items[4]["scale"] == listings.DEFAULT_ESRGAN_SCALE
    real = msgspec.to_builtins(listings.realesrgan_models(entries, {"x2": 2}))
    assert real == [
        {"name": "x2", "path": "esrgan/x2.safetensors", "scale": 2},
        {"name": "mystery", "path": "esrgan/mystery.pth", "scale": 4},
    ]


def test_embeddings_are_skipped_with_a_reason() -> None:
    body = msgspec.to_builtins(
        listings.embeddings([_entry("easyneg", "embedding", "embeddings/easyneg.pt")])
    )
    assert body["loaded"] == {}
    assert set(body["skipped"]) == {"easyneg"}
    assert "cannot be loaded" in body["skipped"]["easyneg"]["reason"]


def test_infotext_parameters_follow_a1111_parse_generation_parameters() -> None:
    text = build_infotext(
        "a cat",
        "blurry",
        {"Steps": 4, "Sampler": "euler", "CFG scale": 1.0, "Seed": 7, "Size": "64x80"},
    )
    params = listings.infotext_parameters(text)
    assert params["Prompt"] == "a cat"
    assert params["Negative prompt"] == "blurry"
    assert params["Steps"] == "4" and params["Seed"] == "7"
    assert (params["Size-1"], params["Size-2"]) == ("64", "80")
    assert listings.infotext_parameters("") == {"Prompt": "", "Negative prompt": ""}


def test_png_info_leaves_parameters_out_of_items() -> None:
    body = msgspec.to_builtins(
        listings.png_info("a cat\nSteps: 1, Seed: 2, Size: 64x64", {"parameters": "x", "k": "v"})
    )
    assert body["info"].startswith("a cat")
    assert body["items"] == {"k": "v"}
    assert body["parameters"]["Seed"] == "2"
    assert listings.png_info(None, {}).info == ""


# -- extras ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"resize_mode": 2}, "resize_mode"),
        ({"gfpgan_visibility": 0.5}, "gfpgan_visibility"),
        ({"codeformer_visibility": 1.0}, "codeformer_visibility"),
        ({"upscaler_2": "x2", "extras_upscaler_2_visibility": 0.3}, "upscaler_2"),
        ({"upscaling_resize": 0.0}, "upscaling_resize"),
        ({"upscaling_resize": 9.0}, "upscaling_resize"),
        ({"upscaling_resize": math.nan}, "upscaling_resize"),
        ({"resize_mode": 1, "upscaling_resize_w": 0}, "upscaling_resize_w"),
    ],
)
def test_check_options_refuses_what_cannot_be_done(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        extras.check_options(extras.ExtrasOptions(**fields))  # type: ignore[arg-type]
    assert info.value.field == field


def test_check_options_accepts_webuiapi_defaults() -> None:
    extras.check_options(extras.ExtrasOptions(upscaler_2="x2", extras_upscaler_2_visibility=0))
    extras.check_options(extras.ExtrasOptions())


def test_target_by_factor_and_to_size() -> None:
    by = extras.target_size(64, 48, extras.ExtrasOptions(upscaling_resize=2.5), "x2", 4096)
    assert (by.width, by.height, by.crop) == (160, 120, False)
    assert by.info == {"Postprocess upscale by": "2.5", "Postprocess upscaler": "x2"}
    crop = extras.ExtrasOptions(resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100)
    to = extras.target_size(64, 32, crop, "x2", 4096)
    assert (to.width, to.height, to.crop, to.scale) == (100, 100, True, 100 / 32)
    keep = extras.ExtrasOptions(
        resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100, upscaling_crop=False
    )
    kept = extras.target_size(64, 32, keep, "x2", 4096)
    assert (kept.width, kept.height) == (200, 100)  # aspect kept, as A1111 does


def test_oversize_target_is_refused_before_any_work() -> None:
    with pytest.raises(InvalidRequestError, match="largest side"):
        extras.target_size(1000, 1000, extras.ExtrasOptions(upscaling_resize=8), "x2", 4096)
    # To-size with crop: the covering scale is what memory holds, not just the crop.
    tall = extras.ExtrasOptions(resize_mode=1, upscaling_resize_w=512, upscaling_resize_h=512)
    with pytest.raises(InvalidRequestError):
        extras.target_size(16, 2000, tall, "x2", 4096)


@pytest.mark.parametrize(
    ("scale", "native", "repeats"),
    [(2, 2, 1), (1.5, 2, 1), (3, 2, 2), (4, 2, 2), (8, 2, 3), (100, 2, 4), (2, 4, 1), (8, 4, 2)],
)
def test_esrgan_repeats(scale: float, native: int, repeats: int) -> None:
    assert extras.esrgan_repeats(scale, native) == repeats


def _gradient(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 4 % 256, y * 4 % 256, 0) for y in range(height) for x in range(width)])
    return image


def test_finish_crops_the_centre_to_the_exact_size() -> None:
    image = _gradient(200, 100)
    target = extras.ExtrasTarget(100, 100, 1.0, True)
    out = extras.finish(image, target)
    assert out.size == (100, 100)
    assert out.getpixel((0, 0)) == image.getpixel((50, 0))  # the centre, no resize needed


def test_finish_resizes_to_the_exact_size() -> None:
    out = extras.finish(_gradient(128, 128), extras.ExtrasTarget(150, 150, 1.5, False))
    assert out.size == (150, 150)


def test_nearest_resampler_is_exact() -> None:
    image = _gradient(16, 8)
    target = extras.target_size(16, 8, extras.ExtrasOptions(upscaling_resize=3), "Nearest", 4096)
    out = extras.pil_resample(image, target, "Nearest")
    assert out.tobytes() == image.resize((48, 24), Image.Resampling.NEAREST).tobytes()


def test_encode_png_keeps_parameters_and_adds_postprocessing() -> None:
    data = extras.encode_png(_gradient(8, 8), "a cat\nSteps: 1", "Postprocess upscaler: x2")
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.info["parameters"] == "a cat\nSteps: 1"
        assert image.info["postprocessing"] == "Postprocess upscaler: x2"
        assert extras.text_chunks(image) == {
            "parameters": "a cat\nSteps: 1",
            "postprocessing": "Postprocess upscaler: x2",
        }


def test_html_info_escapes() -> None:
    assert extras.html_info({"Postprocess upscaler": "<b>"}) == (
        "<p>Postprocess upscaler: &lt;b&gt;</p>"
    )
    assert extras.html_info({}) == ""


# -- memory ------------------------------------------------------------------------------------


def test_parse_meminfo_in_bytes() -> None:
    text = "MemTotal:       16000 kB\nMemAvailable:    8000 kB\nHugePages_Total:       0\n"
    assert parse_meminfo(text) == {
        "MemTotal": 16000 * 1024,
        "MemAvailable": 8000 * 1024,
        "HugePages_Total": 0,
    }


def test_memory_report_shape() -> None:
    body = msgspec.to_builtins(memory_report())
    ram = body["ram"]
    assert 0 < ram["used"] < ram["total"] and 0 <= ram["free"] <= ram["total"]
    cuda = body["cuda"]
    assert "error" in cuda or set(cuda["system"]) == {"free", "used", "total"}


class _FakeNvml:
    """Stands in for libnvidia-ml: writes through the ctypes references like the real one."""

    def __init__(self, init_status: int = 0) -> None:
        self.init_status = init_status
        self.shut_down = False

    def nvmlInit_v2(self) -> int:
        return self.init_status

    def nvmlDeviceGetHandleByIndex_v2(self, index: int, handle: Any) -> int:
        handle._obj.value = 1234
        return 0

    def nvmlDeviceGetMemoryInfo(self, handle: Any, memory: Any) -> int:
        memory._obj.total, memory._obj.free, memory._obj.used = 80, 60, 20
        return 0

    def nvmlShutdown(self) -> int:
        self.shut_down = True
        return 0


def test_cuda_report_reads_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeNvml()
    monkeypatch.setattr(info_memory, "_load_nvml", lambda: fake)
    assert msgspec.to_builtins(info_memory.cuda_report()) == {
        "system": {"free": 60, "used": 20, "total": 80}
    }
    assert fake.shut_down
    monkeypatch.setattr(info_memory, "_load_nvml", lambda: _FakeNvml(init_status=9))
    assert "error" in msgspec.to_builtins(info_memory.cuda_report())
    monkeypatch.setattr(info_memory, "_load_nvml", lambda: None)
    assert msgspec.to_builtins(info_memory.cuda_report()) == {"error": "unavailable"}


def test_lora_metadata_decodes_json_values_and_keeps_the_rest() -> None:
    raw = {
        "ss_tag_frequency": '{"set": {"cat": 3}}',
        "ss_dataset_dirs": "[1, 2]",
        "ss_network_dim": "16",
        "odd": "{not json",
    }
    assert listings.lora_metadata(raw) == {
        "ss_tag_frequency": {"set": {"cat": 3}},
        "ss_dataset_dirs": [1, 2],
        "ss_network_dim": "16",
        "odd": "{not json",
    }
    entries = [_entry("style", "lora", "lora/style.safetensors")]
    listed = msgspec.to_builtins(listings.loras(entries, {"style": {"ss_network_dim": "16"}}))
    assert listed[0]["metadata"] == {"ss_network_dim": "16"}
