"""Will this LoRA fit this model? Checked from headers, before the native library sees it.

A LoRA whose shapes do not match its base tensors makes stable-diffusion.cpp abort the whole
process (GGML_ASSERT -> SIGABRT, measured with the pinned binding), so the check runs at submit
time and turns the mistake into a 400.
"""

from __future__ import annotations

from sdrest.models.headers import FileHeader

_DOWN, _UP = ".lora_down.weight", ".lora_up.weight"


def lora_mismatch(model: FileHeader, lora: FileHeader) -> str | None:
    """Why ``lora`` cannot apply to ``model``, or None when nothing contradicts it.

    Only LoRAs named after the model's own tensors (``<tensor>.lora_down/up.weight``) are checked
    shape by shape; other naming schemes pass and are left to the library.
    """
    for name, down in lora.tensors.items():
        if not name.endswith(_DOWN):
            continue
        stem = name[: -len(_DOWN)]
        base = model.tensors.get(stem + ".weight")
        up = lora.tensors.get(stem + _UP)
        if base is None or up is None or len(base.shape) != 2:
            continue
        out_dim, in_dim = base.shape
        if len(down.shape) != 2 or len(up.shape) != 2:
            return f"{stem}: LoRA tensors are not matrices"
        if down.shape[1] != in_dim or up.shape[0] != out_dim or up.shape[1] != down.shape[0]:
            return (
                f"{stem}: LoRA shapes {list(up.shape)} x {list(down.shape)} do not fit the"
                f" model's {list(base.shape)}"
            )
    return None


def architecture_mismatch(model_arch: str, lora_arch: str) -> str | None:
    """A LoRA detected for one architecture cannot apply to another."""
    if "unknown" in (model_arch, lora_arch) or model_arch == lora_arch:
        return None
    return f"the LoRA is for {lora_arch} but the model is {model_arch}"
