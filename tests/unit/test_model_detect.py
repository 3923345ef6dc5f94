"""Architecture and role detection from synthesized headers (tensor names and a few shapes)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from sdrest.models import Detection, FileHeader, TensorInfo, detect, read_header
from sdrest.models.detect import COMPONENT_RULES, DIFFUSION_RULES, STANDALONE_RULES
from tests.unit.support import write_gguf, write_safetensors

Shapes = dict[str, list[int]]

DM = "model.diffusion_model."
VAE_PART: Shapes = {
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
    "first_stage_model.encoder.conv_in.weight": [128, 3, 3, 3],
}
SD1_UNET: Shapes = {
    DM + "input_blocks.0.0.weight": [320, 4, 3, 3],
    DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    DM + "out.2.weight": [4, 320, 3, 3],
}
SD2_UNET: Shapes = {
    **SD1_UNET,
    DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
}
CLIP_TE: Shapes = {
    "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight": [3072, 768],
}


def _tiny(key: str) -> Shapes:
    """Real Flux.2-klein tensor names (the shapes the native library loads)."""
    text = resources.files("sdrest.testing").joinpath("tiny_model_shapes.json").read_text()
    table: dict[str, Shapes] = json.loads(text)
    return table[key]


CASES: dict[str, tuple[Shapes, Detection]] = {
    "sd1 checkpoint": ({**SD1_UNET, **VAE_PART, **CLIP_TE}, Detection("sd1", "checkpoint")),
    "sd2 checkpoint": ({**SD2_UNET, **VAE_PART}, Detection("sd2", "checkpoint")),
    "sd1 unet alone": (
        {k.removeprefix(DM): v for k, v in SD1_UNET.items()},
        Detection("sd1", "diffusion_model"),
    ),
    "sdxl checkpoint": (
        {
            "conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight": [
                3072,
                768,
            ],
            "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": [
                3840,
                1280,
            ],
            DM + "label_emb.0.0.weight": [1280, 2816],
            DM + "input_blocks.0.0.weight": [320, 4, 3, 3],
            DM + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
            **VAE_PART,
        },
        Detection("sdxl", "checkpoint"),
    ),
    "sdxl unet alone": (
        {"label_emb.0.0.weight": [1280, 2816], "input_blocks.0.0.weight": [320, 4, 3, 3]},
        Detection("sdxl", "diffusion_model"),
    ),
    "sd3 checkpoint": (
        {
            DM + "joint_blocks.0.x_block.attn.qkv.weight": [4608, 1536],
            DM + "x_embedder.proj.weight": [1536, 16, 2, 2],
            "text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight": [
                3072,
                768,
            ],
            **VAE_PART,
        },
        Detection("sd3", "checkpoint"),
    ),
    "sd3.5 diffusion only": (
        {DM + "joint_blocks.0.x_block.attn.qkv.weight": [4608, 1536]},
        Detection("sd3", "diffusion_model"),
    ),
    "flux bare": (
        {
            "double_blocks.0.img_attn.qkv.weight": [9216, 3072],
            "double_blocks.0.img_mod.lin.weight": [18432, 3072],
            "single_blocks.0.linear1.weight": [21504, 3072],
            "guidance_in.in_layer.weight": [3072, 256],
        },
        Detection("flux", "diffusion_model"),
    ),
    "flux2 klein tiny (decoder only)": (
        _tiny("flux2_decoder_only"),
        Detection("flux2", "checkpoint", "klein"),
    ),
    "flux2 klein tiny (full vae)": (
        _tiny("flux2_full_vae"),
        Detection("flux2", "checkpoint", "klein"),
    ),
    # Diffusion + LLM text encoder but no VAE (used with a TAESD): not a full checkpoint.
    "flux2 klein tiny (for taesd)": (
        _tiny("flux2_for_taesd"),
        Detection("flux2", "diffusion_model", "klein"),
    ),
    "flux2 dev bare": (
        {
            "double_stream_modulation_img.lin.weight": [36864, 6144],
            "double_blocks.0.img_attn.qkv.weight": [18432, 6144],
            "single_blocks.47.linear1.weight": [36864, 6144],
        },
        Detection("flux2", "diffusion_model", "dev"),
    ),
    "chroma": (
        {
            "distilled_guidance_layer.in_proj.weight": [5120, 64],
            "double_blocks.0.img_attn.qkv.weight": [9216, 3072],
            "single_blocks.0.linear1.weight": [21504, 3072],
        },
        Detection("chroma", "diffusion_model"),
    ),
    "wan": (
        {
            "patch_embedding.weight": [1536, 16, 1, 2, 2],
            "blocks.0.cross_attn.k.weight": [1536, 1536],
            "blocks.0.self_attn.q.weight": [1536, 1536],
            "head.head.weight": [64, 1536],
        },
        Detection("wan", "diffusion_model"),
    ),
    "qwen image": (
        {
            "img_in.weight": [3072, 64],
            "txt_norm.weight": [3584],
            "transformer_blocks.0.img_mod.1.weight": [18432, 3072],
            "transformer_blocks.0.txt_mod.1.weight": [18432, 3072],
        },
        Detection("qwen_image", "diffusion_model"),
    ),
    "z image": (
        {
            "cap_embedder.1.weight": [3840, 2560],
            "context_refiner.0.attention.qkv.weight": [11520, 3840],
            "noise_refiner.0.attention.qkv.weight": [11520, 3840],
            "layers.0.attention.qkv.weight": [11520, 3840],
        },
        Detection("z_image", "diffusion_model"),
    ),
    "lora sd1 (ldm names)": (
        {
            DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.lora_down.weight": [4, 768],
            DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.lora_up.weight": [320, 4],
            DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.alpha": [],
        },
        Detection("sd1", "lora"),
    ),
    "lora kohya names": (
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": [4, 320],
            "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": [],
        },
        Detection("unknown", "lora"),
    ),
    "lora peft qwen": (
        {
            "transformer_blocks.0.img_mod.1.lora_A.weight": [16, 3072],
            "transformer_blocks.0.img_mod.1.lora_B.weight": [18432, 16],
        },
        Detection("qwen_image", "lora"),
    ),
    # Flux.1, Flux.2 and Chroma LoRAs share names: no guess, so none is wrongly refused.
    "lora flux family": (
        {
            DM + "single_blocks.0.linear1.lora_down.weight": [4, 128],
            DM + "single_blocks.0.linear1.lora_up.weight": [1152, 4],
            DM + "double_blocks.0.img_attn.qkv.lora_down.weight": [4, 128],
        },
        Detection("unknown", "lora"),
    ),
    "lora alpha only": ({"a.b.alpha": [], "a.b.diff": [4, 4]}, Detection("unknown", "lora")),
    "vae standalone": (_tiny("flux2_vae_full"), Detection("vae", "vae")),
    "vae decoder only": (_tiny("flux2_vae_decoder"), Detection("vae", "vae")),
    "vae first_stage_model only": (VAE_PART, Detection("vae", "vae")),
    "taesd": (_tiny("taesd"), Detection("taesd", "taesd")),
    "esrgan new names": (
        {
            "conv_first.weight": [64, 3, 3, 3],
            "conv_body.weight": [64, 64, 3, 3],
            "conv_up1.weight": [64, 64, 3, 3],
            "conv_hr.weight": [64, 64, 3, 3],
            "conv_last.weight": [3, 64, 3, 3],
        },
        Detection("esrgan", "upscaler"),
    ),
    "esrgan old names": (
        {"model.0.weight": [64, 3, 3, 3], "model.1.sub.0.RDB1.conv1.0.weight": [32, 64, 3, 3]},
        Detection("esrgan", "upscaler"),
    ),
    "clip_l": (
        {
            "text_model.embeddings.token_embedding.weight": [49408, 768],
            "text_model.encoder.layers.0.self_attn.k_proj.weight": [768, 768],
        },
        Detection("clip_l", "text_encoder"),
    ),
    "clip_g": (
        {
            "text_model.embeddings.token_embedding.weight": [49408, 1280],
            "text_model.encoder.layers.0.self_attn.k_proj.weight": [1280, 1280],
        },
        Detection("clip_g", "text_encoder"),
    ),
    "t5xxl": (
        {
            "shared.weight": [32128, 4096],
            "encoder.block.0.layer.0.SelfAttention.k.weight": [4096, 4096],
        },
        Detection("t5xxl", "text_encoder"),
    ),
    "t5xxl gguf names": (
        {"token_embd.weight": [32128, 64], "enc.blk.0.attn_k.weight": [64, 64]},
        Detection("t5xxl", "text_encoder"),
    ),
    "llm qwen": (
        {
            "model.embed_tokens.weight": [151936, 2560],
            "model.layers.0.self_attn.q_proj.weight": [4096, 2560],
        },
        Detection("llm", "text_encoder"),
    ),
    "controlnet": (
        {
            "control_model.input_hint_block.0.weight": [16, 3, 3, 3],
            "control_model.zero_convs.0.0.weight": [320, 320, 1, 1],
        },
        Detection("controlnet", "controlnet"),
    ),
    "embedding": ({"string_to_param.*": [2, 768]}, Detection("embedding", "embedding")),
    "unknown": ({"foo.bar": [3], "baz": [4, 4]}, Detection("unknown", "unknown")),
}


def _header(shapes: Shapes) -> FileHeader:
    return FileHeader("safetensors", {n: TensorInfo(tuple(s), "F16") for n, s in shapes.items()})


@pytest.mark.parametrize("case", list(CASES))
def test_detect_from_names(case: str) -> None:
    shapes, expected = CASES[case]
    assert detect(_header(shapes), "x.safetensors") == expected


@pytest.mark.parametrize(
    "case",
    [
        "sd2 checkpoint",
        "sdxl checkpoint",
        "sd3 checkpoint",
        "flux bare",
        "flux2 klein tiny (decoder only)",
        "chroma",
        "wan",
        "qwen image",
        "z image",
        "taesd",
        "esrgan new names",
        "clip_l",
        "t5xxl",
        "lora sd1 (ldm names)",
    ],
)
def test_detect_through_safetensors_files(tmp_path: Path, case: str) -> None:
    shapes, expected = CASES[case]
    path = write_safetensors(tmp_path / "m.safetensors", {n: s or [1] for n, s in shapes.items()})
    assert detect(read_header(path), path.name) == expected


@pytest.mark.parametrize(
    "case",
    [
        "sd2 checkpoint",
        "flux bare",
        "flux2 dev bare",
        "wan",
        "z image",
        "t5xxl gguf names",
        "esrgan new names",
    ],
)
def test_detect_through_gguf_files(tmp_path: Path, case: str) -> None:
    shapes, expected = CASES[case]
    # Keep the GGUF tiny: only the widths detection reads keep their real size.
    small = {n: [min(d, 8) if "to_k" not in n else d for d in s] or [1] for n, s in shapes.items()}
    path = write_gguf(tmp_path / "m.gguf", small)
    assert detect(read_header(path), path.name) == expected


def test_sd2_needs_the_1024_context_width() -> None:
    narrow = {
        **SD1_UNET,
        DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 1000],
    }
    assert detect(_header(narrow)).architecture == "sd1"


def test_flux2_klein_and_dev_variants_differ() -> None:
    klein = detect(_header(_tiny("flux2_decoder_only")))
    dev = detect(
        _header({**_tiny("flux2_decoder_only"), DM + "single_blocks.47.linear1.weight": [1, 1]})
    )
    assert (klein.variant, dev.variant) == ("klein", "dev")


def test_gguf_metadata_is_a_hint_when_names_say_nothing(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {"mystery.weight": [8]}, arch="wan")
    assert detect(read_header(path)) == Detection("wan", "diffusion_model")
    encoder = write_gguf(tmp_path / "t.gguf", {"mystery.weight": [8]}, arch="t5encoder")
    assert detect(read_header(encoder)) == Detection("t5xxl", "text_encoder")


def test_names_beat_gguf_metadata(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {"conv_first.weight": [8, 3, 3, 3]}, arch="flux")
    assert detect(read_header(path)).role == "upscaler"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("RealESRGAN_x4plus.pth", Detection("esrgan", "upscaler")),
        ("taesd_decoder.pth", Detection("taesd", "taesd")),
        ("my-style-lora.ckpt", Detection("unknown", "lora")),
        ("v1-5-pruned.ckpt", Detection("unknown", "unknown")),
    ],
)
def test_pickles_fall_back_to_file_name_hints(filename: str, expected: Detection) -> None:
    assert detect(FileHeader("pickle"), filename) == expected


def test_every_rule_says_why() -> None:
    for rule in (*COMPONENT_RULES, *DIFFUSION_RULES, *STANDALONE_RULES):
        assert rule.why and rule.require
