"""Few-MB model files with random weights that the real native library loads and runs.

stable-diffusion.cpp infers widths and depths of a Flux.2-klein model from tensor shapes, so a
shrunken file (DiT hidden 128, one single block, a 0-layer LLM text encoder) generates real
images in a fraction of a second. Files are deterministic: the same call writes the same bytes.
Needs the ``test`` extra (numpy, gguf, safetensors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

Quant = Literal["q4_0", "q8_0", "f16"]
Variant = Literal["full_vae", "decoder_only", "for_taesd"]
# LoRA target layers of the tiny DiT: name -> (out, in).
LORA_LAYERS: dict[str, tuple[int, int]] = {
    "single_blocks.0.linear1": (1152, 128),
    "single_blocks.0.linear2": (128, 512),
    "img_in": (128, 128),
    "txt_in": (128, 32),
}


def _shapes(key: str) -> dict[str, list[int]]:
    text = resources.files("sdrest.testing").joinpath("tiny_model_shapes.json").read_text()
    table: dict[str, dict[str, list[int]]] = json.loads(text)
    return table[key]


def _is_norm(name: str) -> bool:
    return any(part in name for part in ("norm", "scale", ".gamma"))


def _init(name: str, shape: list[int], rng: np.random.Generator, zero: bool) -> NDArray[np.float32]:
    """N(0, 1/sqrt(fan_in)) weights, norm/scale weights 1, biases 0."""
    if name.endswith("bias") or zero:
        return np.zeros(shape, np.float32)
    if len(shape) == 1:
        return (
            np.ones(shape, np.float32)
            if _is_norm(name) or name.endswith("weight")
            else (np.zeros(shape, np.float32))
        )
    fan_in = int(np.prod(shape[1:]))
    weights: NDArray[np.float32] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return weights


def _tensors(key: str, seed: int, zero: bool = False) -> dict[str, NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    return {name: _init(name, shape, rng, zero) for name, shape in sorted(_shapes(key).items())}


def _write(path: Path, tensors: dict[str, NDArray[np.float32]], quant: Quant) -> Path:
    """Dtype rules the library loads: 1-D f32, 4-D f16, 2-D f16 or quantized (last dim % 32)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gguf":
        import gguf

        writer = gguf.GGUFWriter(str(path), arch="flux2")
        target = {
            "q4_0": gguf.GGMLQuantizationType.Q4_0,
            "q8_0": gguf.GGMLQuantizationType.Q8_0,
        }.get(quant)
        for name, arr in tensors.items():
            if arr.ndim == 1:
                writer.add_tensor(name, arr)
            elif arr.ndim == 2 and target is not None and arr.shape[-1] % 32 == 0:
                data = gguf.quants.quantize(arr, target)
                writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=target)
            else:
                writer.add_tensor(name, arr.astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path
    if path.suffix != ".safetensors":
        raise ValueError(f"write .gguf or .safetensors, not {path.name}")
    from safetensors.numpy import save_file

    save_file(
        {n: a if a.ndim == 1 else a.astype(np.float16) for n, a in tensors.items()}, str(path)
    )
    return path


def write_flux2_klein(
    path: Path,
    *,
    variant: Variant = "full_vae",
    quant: Quant = "q4_0",
    seed: int = 0,
    zero: bool = False,
) -> Path:
    """A Flux.2-klein checkpoint (quantized ones are .gguf).

    ``full_vae``: all modes; ``decoder_only``: txt2img only, load with vae_decode_only;
    ``for_taesd``: pair it with :func:`write_taesd`.
    """
    key = {
        "full_vae": "flux2_full_vae",
        "decoder_only": "flux2_decoder_only",
        "for_taesd": "flux2_for_taesd",
    }[variant]
    return _write(path, _tensors(key, seed, zero), quant)


def write_taesd(path: Path, *, seed: int = 0) -> Path:
    """The Tiny AutoEncoder that goes with ``variant="for_taesd"``."""
    return _write(path, _tensors("taesd", seed), "f16")


def write_flux2_vae(path: Path, *, decoder_only: bool = False, seed: int = 0) -> Path:
    """A standalone Flux.2 VAE."""
    return _write(
        path, _tensors("flux2_vae_decoder" if decoder_only else "flux2_vae_full", seed), "f16"
    )


def write_esrgan(
    path: Path, *, scale: Literal[2, 4] = 2, identity: bool = True, seed: int = 0
) -> Path:
    """A RealESRGAN file with 0 RRDB blocks. ``identity`` weights (centre tap 1 on channels 0..2,
    conv_body zero, biases 0) make the upscale an exact nearest-neighbour resize."""
    rng = np.random.default_rng(seed)
    names = [
        "conv_first",
        "conv_body",
        "conv_up1",
        *(["conv_up2"] if scale == 4 else []),
        "conv_hr",
        "conv_last",
    ]
    tensors: dict[str, NDArray[np.float32]] = {}
    for name in names:
        out_ch, in_ch = (3, 64) if name == "conv_last" else (64, 3 if name == "conv_first" else 64)
        weight = np.zeros((out_ch, in_ch, 3, 3), np.float32)
        if identity and name != "conv_body":
            for channel in range(3):
                weight[channel, channel, 1, 1] = 1.0
        elif not identity:
            weight = (rng.standard_normal(weight.shape) / np.sqrt(in_ch * 9)).astype(np.float32)
        tensors[f"{name}.weight"] = weight
        tensors[f"{name}.bias"] = np.zeros((out_ch,), np.float32)
    return _write(path, tensors, "f16")


def write_lora(path: Path, *, seed: int = 0, rank: int = 4, scale: float = 1.0) -> Path:
    """A LoRA for the tiny DiT: the library logs "(12 / 12) LoRA tensors have been applied"."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, NDArray[np.float32]] = {}
    for layer, (out_dim, in_dim) in LORA_LAYERS.items():
        prefix = f"model.diffusion_model.{layer}"
        tensors[f"{prefix}.lora_down.weight"] = (
            rng.standard_normal((rank, in_dim)) * scale
        ).astype(np.float32)
        tensors[f"{prefix}.lora_up.weight"] = (rng.standard_normal((out_dim, rank)) * scale).astype(
            np.float32
        )
        tensors[f"{prefix}.alpha"] = np.array(float(rank), np.float32)
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_mismatched_lora(path: Path) -> Path:
    """A LoRA whose shapes do not fit the tiny DiT. Loading it ABORTS the process (GGML_ASSERT):
    only for crash-isolation tests that run the engine in another process."""
    from safetensors.numpy import save_file

    prefix = "model.diffusion_model.img_in"
    save_file(
        {
            f"{prefix}.lora_down.weight": np.ones((4, 7), np.float32),
            f"{prefix}.lora_up.weight": np.ones((9, 4), np.float32),
        },
        str(path),
    )
    return path


def write_garbage_model(path: Path, size: int = 4096, seed: int = 0) -> Path:
    """Random bytes with a model file's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def write_truncated_model(path: Path, source: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of a real model file."""
    data = source.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@dataclass(frozen=True)
class TinyModelSet:
    """A models folder in the server's layout."""

    root: Path
    checkpoint: Path
    taesd: Path
    lora: Path
    esrgan: Path


def build_models_dir(root: Path) -> TinyModelSet:
    """Lay out ``root`` with a checkpoint (all modes), TAESD, LoRA and ESRGAN; files that already
    exist are kept (they are deterministic), so calling this per test session is cheap."""
    root = Path(root)
    targets: dict[str, tuple[Path, Callable[[Path], Path]]] = {
        "checkpoint": (
            root / "checkpoints" / "tiny-flux2.gguf",
            lambda p: write_flux2_klein(p, variant="full_vae", quant="q4_0"),
        ),
        "taesd": (root / "taesd" / "tiny-taesd.safetensors", write_taesd),
        "lora": (root / "lora" / "tiny-lora.safetensors", write_lora),
        "esrgan": (root / "esrgan" / "tiny-esrgan-x2.safetensors", write_esrgan),
    }
    paths: dict[str, Path] = {}
    for key, (path, writer) in targets.items():
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.partial{path.suffix}")
            writer(tmp)
            tmp.replace(path)
            logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
        paths[key] = path
    return TinyModelSet(root=root, **paths)
