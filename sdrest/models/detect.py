"""Detect a model file's architecture and role from its tensor names alone.

The rules are data: an ordered list, first match wins, each with the reason it exists. The role
decides how the engine passes the file: a ``checkpoint`` (diffusion model + VAE in one file) as
``model_path``, a standalone ``diffusion_model`` as ``diffusion_model_path`` (it needs a VAE and
text encoders beside it, through a preset), the rest as components.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdrest.models.headers import FileHeader


@dataclass(frozen=True)
class Detection:
    """What a file is: ``architecture`` (sd1, flux2, clip_l, ...) and ``role``."""

    architecture: str
    role: str


@dataclass(frozen=True)
class Rule:
    """Matches when each ``all_of`` substring occurs in a tensor name and no ``none_of`` does.

    A pattern starting with a newline must match at the start of a name.
    """

    architecture: str
    all_of: tuple[str, ...]
    none_of: tuple[str, ...] = ()
    why: str = ""


# Components first: their names would otherwise match diffusion rules (a LoRA for Flux names
# single_blocks too). Role is the dict key.
COMPONENT_RULES: dict[str, tuple[Rule, ...]] = {
    "lora": (
        Rule("lora", ("lora_down",), why="kohya/sd.cpp LoRA naming"),
        Rule("lora", ("lora_A",), why="PEFT/diffusers LoRA naming"),
        Rule("lora", (".lora.down",), why="LyCORIS-style naming"),
    ),
    "taesd": (
        Rule(
            "taesd",
            ("\ndecoder.layers.",),
            ("first_stage_model", "diffusion_model"),
            why="Tiny AutoEncoder: a plain Sequential of layers",
        ),
        Rule("taesd", ("\nencoder.layers.",), ("first_stage_model", "diffusion_model")),
    ),
    "upscaler": (
        Rule("esrgan", ("conv_first",), why="RealESRGAN (new names)"),
        Rule("esrgan", ("RDB1",), why="ESRGAN RRDB blocks (old names)"),
    ),
    "controlnet": (
        Rule("controlnet", ("input_hint_block",), why="ControlNet hint encoder"),
        Rule("controlnet", ("control_model.",)),
    ),
    "embedding": (
        Rule("embedding", ("string_to_param",), why="A1111 textual inversion"),
        Rule("embedding", ("emb_params",)),
    ),
}

# Diffusion architectures, most specific first.
DIFFUSION_RULES: tuple[Rule, ...] = (
    Rule("flux2", ("double_stream_modulation_img",), why="Flux.2 shares modulation across blocks"),
    Rule("chroma", ("distilled_guidance_layer",), why="Chroma replaces Flux's guidance input"),
    Rule("flux", ("double_blocks.", "single_blocks."), why="Flux.1 MMDiT + single-stream blocks"),
    Rule("sd3", ("joint_blocks.",), why="SD3/SD3.5 MMDiT"),
    Rule("wan", ("patch_embedding", "cross_attn"), why="Wan 2.x video DiT"),
    Rule("qwen_image", ("img_mod", "txt_norm"), why="Qwen-Image MMDiT"),
    Rule("z_image", ("cap_embedder",), why="Z-Image caption embedder"),
    Rule("z_image", ("context_refiner",)),
    Rule("sdxl", ("conditioner.embedders.1",), why="SDXL's second text encoder in a checkpoint"),
    Rule("sdxl", ("label_emb.",), ("joint_blocks",), why="SDXL UNet's added-conditions embedding"),
    Rule("sd1", ("input_blocks.", "attn2.to_k"), why="SD1/SD2 UNet; width decides below"),
    Rule("sd1", ("down_blocks.", "attn2.to_k"), why="diffusers-format UNet"),
)

_CHECKPOINT_MARKERS = ("first_stage_model.", "vae.decoder.", "vae.encoder.")
_GGUF_ARCH_HINTS = {
    "flux": "flux",
    "sd3": "sd3",
    "wan": "wan",
    "sdxl": "sdxl",
    "sd1": "sd1",
    "qwen_image": "qwen_image",
    "lumina2": "z_image",
    "chroma": "chroma",
}


def _matches(rule: Rule, blob: str) -> bool:
    return all(s in blob for s in rule.all_of) and not any(s in blob for s in rule.none_of)


def _sd1_or_sd2(header: FileHeader) -> str:
    # Cross-attention context width: 768 (CLIP-L) is SD1.x, 1024 (OpenCLIP-H) is SD2.x.
    for name, info in header.tensors.items():
        if "attn2.to_k.weight" in name and len(info.shape) == 2:
            return "sd2" if info.shape[1] == 1024 else "sd1"
    return "sd1"


def _text_encoder(header: FileHeader, blob: str) -> str | None:
    if "text_model.encoder.layers." in blob:
        for name, info in header.tensors.items():
            if name.endswith("token_embedding.weight") and len(info.shape) == 2:
                return "clip_g" if info.shape[1] == 1280 else "clip_l"
        return "clip_l"
    if "encoder.block." in blob and "shared.weight" in blob:
        return "t5xxl"
    if ("model.embed_tokens" in blob and "model.layers." in blob) or "token_embd.weight" in blob:
        return "llm"
    return None


def diffusion_architecture(header: FileHeader, blob: str) -> str | None:
    """The diffusion architecture the tensor names describe, if any."""
    for rule in DIFFUSION_RULES:
        if _matches(rule, blob):
            return _sd1_or_sd2(header) if rule.architecture == "sd1" else rule.architecture
    return None


def detect(header: FileHeader, filename: str = "") -> Detection:
    """Architecture and role of a model file from its header (never loads weights)."""
    names = list(header.tensors)
    if not names:
        return Detection("unknown", "unknown")
    blob = "\n" + "\n".join(names)  # a leading newline lets rules anchor at a name's start
    for role, rules in COMPONENT_RULES.items():
        if any(_matches(rule, blob) for rule in rules):
            if role == "lora":
                return Detection(diffusion_architecture(header, blob) or "unknown", "lora")
            return Detection(rules[0].architecture, role)
    arch = diffusion_architecture(header, blob)
    if arch is not None:
        whole = any(marker in blob for marker in _CHECKPOINT_MARKERS)
        return Detection(arch, "checkpoint" if whole else "diffusion_model")
    if "decoder.conv_in" in blob or "encoder.conv_in" in blob:
        return Detection("vae", "vae")
    encoder = _text_encoder(header, blob)
    if encoder is not None:
        return Detection(encoder, "text_encoder")
    hint = str(header.metadata.get("general.architecture", "")).lower()
    if hint in _GGUF_ARCH_HINTS:
        return Detection(_GGUF_ARCH_HINTS[hint], "diffusion_model")
    return Detection("unknown", "unknown")
