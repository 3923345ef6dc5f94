"""LoRA-to-model compatibility from headers."""

from __future__ import annotations

from sdrest.models import FileHeader, TensorInfo
from sdrest.models.compat import architecture_mismatch, lora_mismatch

MODEL = FileHeader("gguf", {"m.img_in.weight": TensorInfo((128, 64), "Q4_0")})


def _lora(up: tuple[int, ...], down: tuple[int, ...]) -> FileHeader:
    return FileHeader(
        "safetensors",
        {
            "m.img_in.lora_up.weight": TensorInfo(up, "F32"),
            "m.img_in.lora_down.weight": TensorInfo(down, "F32"),
        },
    )


def test_fitting_lora_passes() -> None:
    assert lora_mismatch(MODEL, _lora((128, 4), (4, 64))) is None


def test_wrong_shapes_are_named() -> None:
    problem = lora_mismatch(MODEL, _lora((9, 4), (4, 7)))
    assert problem is not None and "m.img_in" in problem and "[128, 64]" in problem
    assert lora_mismatch(MODEL, _lora((128, 4), (5, 64))) is not None  # rank disagrees


def test_unrelated_names_are_left_to_the_library() -> None:
    other = FileHeader("safetensors", {"lora_unet_x.lora_down.weight": TensorInfo((4, 3), "F32")})
    assert lora_mismatch(MODEL, other) is None


def test_architecture_mismatch() -> None:
    assert architecture_mismatch("flux", "sdxl") == "the LoRA is for sdxl but the model is flux"
    assert architecture_mismatch("flux", "flux") is None
    assert architecture_mismatch("flux", "unknown") is None
