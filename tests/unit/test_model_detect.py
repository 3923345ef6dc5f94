"""Architecture and role detection from synthesized headers (no weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdrest.models import FileHeader, TensorInfo, detect, read_header
from sdrest.models.headers import HeaderError
from tests.fakes import write_safetensors_header


def _header(names: dict[str, tuple[int, ...]] | list[str]) -> FileHeader:
    if isinstance(names, list):
        names = {n: (4, 4) for n in names}
    return FileHeader("safetensors", {n: TensorInfo(s, "F16") for n, s in names.items()})


DM = "model.diffusion_model."
VAE = "first_stage_model.decoder.conv_in.weight"


@pytest.mark.parametrize(
    ("names", "architecture", "role"),
    [
        (
            {DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768), VAE: (4,)},
            "sd1",
            "checkpoint",
        ),
        (
            {
                DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
                VAE: (4,),
            },
            "sd2",
            "checkpoint",
        ),
        (
            [
                DM + "label_emb.0.0.weight",
                DM + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
                "conditioner.embedders.1.model.ln_final.weight",
                VAE,
            ],
            "sdxl",
            "checkpoint",
        ),
        ([DM + "joint_blocks.0.x_block.attn.qkv.weight", VAE], "sd3", "checkpoint"),
        (
            [DM + "double_blocks.0.img_attn.qkv.weight", DM + "single_blocks.0.linear1.weight"],
            "flux",
            "diffusion_model",
        ),
        (
            [
                DM + "double_stream_modulation_img.lin.weight",
                DM + "single_blocks.0.linear1.weight",
                VAE,
                "text_encoders.llm.model.embed_tokens.weight",
            ],
            "flux2",
            "checkpoint",
        ),
        (
            [
                "distilled_guidance_layer.in_proj.weight",
                "double_blocks.0.img_attn.qkv.weight",
                "single_blocks.0.linear1.weight",
            ],
            "chroma",
            "diffusion_model",
        ),
        (["patch_embedding.weight", "blocks.0.cross_attn.k.weight"], "wan", "diffusion_model"),
        (
            ["transformer_blocks.0.img_mod.1.weight", "txt_norm.weight"],
            "qwen_image",
            "diffusion_model",
        ),
        (
            ["cap_embedder.0.weight", "context_refiner.0.attention.qkv.weight"],
            "z_image",
            "diffusion_model",
        ),
        (
            [DM + "img_in.lora_down.weight", DM + "single_blocks.0.linear1.lora_up.weight"],
            "unknown",
            "lora",
        ),
        (
            [
                "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",
                "lora_unet_single_blocks_0_linear1.lora_up.weight",
            ],
            "unknown",
            "lora",
        ),
        (
            [
                "decoder.conv_in.weight",
                "encoder.conv_in.weight",
                "decoder.up.0.block.0.conv1.weight",
            ],
            "vae",
            "vae",
        ),
        (["decoder.layers.0.weight", "decoder.layers.1.conv.0.weight"], "taesd", "taesd"),
        (
            ["conv_first.weight", "conv_body.weight", "conv_up1.weight", "conv_last.weight"],
            "esrgan",
            "upscaler",
        ),
        (
            {
                "text_model.encoder.layers.0.mlp.fc1.weight": (3072, 768),
                "text_model.embeddings.token_embedding.weight": (49408, 768),
            },
            "clip_l",
            "text_encoder",
        ),
        (
            {
                "text_model.encoder.layers.0.mlp.fc1.weight": (5120, 1280),
                "text_model.embeddings.token_embedding.weight": (49408, 1280),
            },
            "clip_g",
            "text_encoder",
        ),
        (
            ["encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight"],
            "t5xxl",
            "text_encoder",
        ),
        (
            ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"],
            "llm",
            "text_encoder",
        ),
        (["input_hint_block.0.weight", "zero_convs.0.0.weight"], "controlnet", "controlnet"),
        (["something.else"], "unknown", "unknown"),
    ],
)
def test_detect(
    names: dict[str, tuple[int, ...]] | list[str], architecture: str, role: str
) -> None:
    found = detect(_header(names))
    assert (found.architecture, found.role) == (architecture, role)


def test_lora_for_flux_knows_its_base() -> None:
    names = [
        DM + "double_blocks.0.img_attn.qkv.lora_down.weight",
        DM + "single_blocks.0.linear1.lora_up.weight",
    ]
    assert detect(_header(names)).architecture == "flux"


def test_gguf_header_is_read_without_weights(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), arch="flux")
    writer.add_string("general.name", "tiny")
    writer.add_array("tokens", ["a", "b"])
    for name in ("double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"):
        writer.add_tensor(name, np.zeros((2, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_header(path)
    assert header.format == "gguf"
    assert header.tensors["single_blocks.0.linear1.weight"] == TensorInfo((2, 32), "F32")
    assert header.metadata["general.name"] == "tiny" and header.metadata["tokens"] == ["a", "b"]
    assert detect(header).architecture == "flux"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x01",
        b"\xff" * 8 + b"{}",
        (10).to_bytes(8, "little") + b"not json!!",
        (2).to_bytes(8, "little") + b"[]",
        b"GGUF" + (3).to_bytes(4, "little") + b"\xff" * 16,
        b"GGUF" + (99).to_bytes(4, "little"),
    ],
)
def test_hostile_or_broken_headers_raise_header_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(HeaderError):
        read_header(path)


def test_safetensors_header_round_trip(tmp_path: Path) -> None:
    path = write_safetensors_header(tmp_path / "x.safetensors", ["a.weight", "b.bias"])
    header = read_header(path)
    assert set(header.tensors) == {"a.weight", "b.bias"}
    assert header.tensors["a.weight"] == TensorInfo((1,), "F32")


def test_pickle_files_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    path.write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")
    assert read_header(path).format == "pickle"
