"""Detect a model file's architecture and role from its tensor names (and shapes) alone.

The rules are data: ordered tables, first match wins, each rule saying why it exists. Patterns
are regular expressions searched over every tensor name (``^`` anchors at a name's start), so a
rule can match a checkpoint's ``model.diffusion_model.`` prefix and a bare diffusion file alike.

The role decides how the engine passes the file to stable-diffusion.cpp: a ``checkpoint``
(diffusion weights bundled with a VAE and/or text encoders) as ``model_path``; a standalone
``diffusion_model`` as ``diffusion_model_path`` (it needs a VAE and text encoders beside it,
through a preset); the rest as components (``vae_path``, ``taesd_path``, ``clip_l_path``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sdrest.models.headers import FileHeader, TensorInfo

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Detection:
    """What a file is: ``architecture`` (sd1, flux2, clip_l, esrgan...) and ``role``.

    ``variant`` refines the architecture where the names tell more (``klein`` for Flux.2-klein).
    """

    architecture: str
    role: str
    variant: str | None = None


@dataclass(frozen=True)
class Rule:
    """Matches when every ``require`` pattern matches some tensor name and no ``exclude`` does."""

    architecture: str
    role: str | None  # None: a diffusion architecture; the bundle decides checkpoint or not
    require: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]
    why: str


def rule(
    architecture: str,
    role: str | None,
    require: tuple[str, ...],
    exclude: tuple[str, ...] = (),
    *,
    why: str,
) -> Rule:
    """A :class:`Rule` from pattern strings (multi-line regexes: ``^`` is a name's start)."""
    return Rule(
        architecture,
        role,
        tuple(re.compile(p, re.MULTILINE) for p in require),
        tuple(re.compile(p, re.MULTILINE) for p in exclude),
        why,
    )


# Prefix of the diffusion weights in a checkpoint; optional so bare diffusion files match too.
_DM = r"^(?:model\.diffusion_model\.|diffusion_model\.|model\.)?"
# Names of LoRA / LyCORIS deltas: the file only makes sense on top of a base model.
_LORA = r"(?:lora_down|lora_up|lora_A|lora_B|lora\.down|lora\.up|hada_w1|lokr_w1)\b"

# Components first: their names would otherwise match diffusion rules (a Flux LoRA names
# double_blocks too, a checkpoint contains a VAE's decoder.conv_in).
COMPONENT_RULES: tuple[Rule, ...] = (
    rule(
        UNKNOWN,
        "lora",
        (_LORA,),
        why="LoRA deltas (kohya lora_down/up, PEFT lora_A/B, LyCORIS); arch from base names",
    ),
    rule(
        UNKNOWN,
        "lora",
        (r"\.alpha$",),
        (r"^(?:first_stage|cond_stage)_model\.|^conditioner\.",),
        why="a per-layer LoRA scale; a bundled checkpoint never counts as a LoRA for one",
    ),
    rule(
        "taesd",
        "taesd",
        (r"^(?:decoder|encoder)\.layers\.\d",),
        why="Tiny AutoEncoder: a plain nn.Sequential, so its names are layers.N",
    ),
    rule(
        "esrgan",
        "upscaler",
        (r"^conv_first\.",),
        why="RealESRGAN (new names): conv_first/conv_body/conv_up*/conv_hr/conv_last",
    ),
    rule(
        "esrgan",
        "upscaler",
        (r"^model\.0\.weight$",),
        (_DM + "input_blocks",),
        why="ESRGAN (old sequential names): model.0 ... model.N",
    ),
    rule("esrgan", "upscaler", (r"RDB1\.",), why="ESRGAN RRDB blocks (old names)"),
    rule(
        "controlnet",
        "controlnet",
        (r"input_hint_block\.",),
        why="ControlNet: the hint encoder exists in nothing else",
    ),
    rule("controlnet", "controlnet", (r"^control_model\.",), why="ControlNet in ldm naming"),
    rule(
        "embedding",
        "embedding",
        (r"^(?:string_to_param|emb_params$|clip_[lg]$)",),
        why="textual inversion: A1111 string_to_param, or SDXL clip_l/clip_g vectors",
    ),
)

# Diffusion architectures, most specific first (Flux.2 and Chroma before Flux, which they extend).
DIFFUSION_RULES: tuple[Rule, ...] = (
    rule(
        "flux2",
        None,
        (_DM + r"double_stream_modulation_img\.",),
        why="Flux.2 shares one modulation across blocks instead of per-block img_mod",
    ),
    rule(
        "chroma",
        None,
        (_DM + r"distilled_guidance_layer\.",),
        why="Chroma replaces Flux's guidance/vector inputs with a distilled approximator",
    ),
    rule(
        "flux",
        None,
        (_DM + r"(?:double|single)_blocks\.\d",),
        why="Flux.1 (dev/schnell/kontext): MMDiT double blocks + single-stream blocks",
    ),
    rule("sd3", None, (_DM + r"joint_blocks\.\d",), why="SD3/SD3.5 MMDiT joint blocks"),
    rule(
        "wan",
        None,
        (_DM + r"blocks\.\d+\.cross_attn\.",),
        why="Wan 2.x video DiT: blocks.N.cross_attn",
    ),
    rule(
        "wan",
        None,
        (_DM + r"patch_embedding\.", _DM + r"blocks\.\d"),
        why="Wan 2.x video DiT: 3-D patch embedding",
    ),
    rule(
        "qwen_image",
        None,
        (_DM + r"transformer_blocks\.\d+\.img_mod\.",),
        why="Qwen-Image MMDiT: per-block img_mod/txt_mod",
    ),
    rule(
        "qwen_image",
        None,
        (_DM + r"txt_norm\.", _DM + r"transformer_blocks\.\d"),
        why="Qwen-Image: RMS norm on the text stream",
    ),
    rule(
        "z_image",
        None,
        (_DM + r"(?:cap_embedder|context_refiner|noise_refiner)\.",),
        why="Z-Image (Lumina-2 style): caption embedder and refiner blocks",
    ),
    rule(
        "sdxl",
        None,
        (r"^conditioner\.embedders\.1\.",),
        why="SDXL checkpoint: a second (OpenCLIP-G) text encoder",
    ),
    rule("sdxl", None, (r"^text_encoder_2\.",), why="SDXL in diffusers single-file naming"),
    rule(
        "sdxl",
        None,
        (_DM + r"label_emb\.", _DM + r"(?:input|output)_blocks\."),
        why="SDXL UNet: the added-conditions (size/crop) embedding",
    ),
    rule(
        "sdxl",
        None,
        (r"add_embedding\.linear_1", r"down_blocks\."),
        why="SDXL UNet in diffusers naming",
    ),
    rule(
        "sd1",
        None,
        (_DM + r"input_blocks\.\d",),
        why="SD1/SD2 UNet (ldm naming); the cross-attention width picks sd1 or sd2",
    ),
    rule("sd1", None, (r"down_blocks\.\d+\.attentions\.",), why="SD1/SD2 UNet (diffusers naming)"),
)

# Text encoders and VAEs come after diffusion rules: checkpoints contain them too.
STANDALONE_RULES: tuple[Rule, ...] = (
    rule(
        "vae",
        "vae",
        (r"^(?:first_stage_model\.|vae\.)?(?:de|en)coder\.conv_in\.",),
        why="autoencoder (KL VAE, also first_stage_model.-only files) with no diffusion weights",
    ),
    rule(
        "clip_l",
        "text_encoder",
        (r"text_model\.encoder\.layers\.\d",),
        why="CLIP text model; the hidden width picks clip_l (768) or clip_g (1280)",
    ),
    rule(
        "t5xxl",
        "text_encoder",
        (r"^(?:.*\.)?encoder\.block\.\d",),
        why="T5 / UMT5 encoder in HF naming (Flux, SD3 and Wan text encoder)",
    ),
    rule(
        "t5xxl",
        "text_encoder",
        (r"^enc\.blk\.\d",),
        why="T5 / UMT5 encoder in llama.cpp GGUF naming (enc.blk.N, token_embd)",
    ),
    rule(
        "llm",
        "text_encoder",
        (r"(?:^|\.)model\.(?:embed_tokens|layers\.\d)",),
        why="decoder-only LLM text encoder (Qwen2.5-VL, Qwen3, Mistral) in HF naming",
    ),
    rule(
        "llm",
        "text_encoder",
        (r"^token_embd\.weight$", r"^blk\.\d"),
        why="decoder-only LLM in llama.cpp GGUF naming",
    ),
)

# A VAE beside the diffusion weights makes a full checkpoint (-> model_path). Text encoders
# alone do not: such a file still needs a VAE or TAESD beside it, through a preset.
_BUNDLE = re.compile(r"^(?:first_stage_model|vae)\.(?:de|en)coder\.", re.MULTILINE)
# Flux.2-dev has 48 single blocks; Flux.2-klein far fewer (README of the tiny models).
_FLUX2_DEV = re.compile(_DM + r"single_blocks\.47\.", re.MULTILINE)
# ``general.architecture`` values seen in GGUF files -> our architecture names.
GGUF_ARCH_HINTS: dict[str, str] = {
    "flux": "flux",
    "flux2": "flux2",
    "chroma": "chroma",
    "sd3": "sd3",
    "sdxl": "sdxl",
    "sd1": "sd1",
    "sd2": "sd2",
    "wan": "wan",
    "qwen_image": "qwen_image",
    "lumina2": "z_image",
    "z_image": "z_image",
    "t5": "t5xxl",
    "t5encoder": "t5xxl",
    "clip": "clip_l",
    "llama": "llm",
    "qwen2": "llm",
    "qwen2vl": "llm",
    "qwen3": "llm",
    "mistral": "llm",
}
_TEXT_ENCODER_ARCHS = frozenset({"t5xxl", "clip_l", "clip_g", "llm"})
# Last resort for files without tensor names (pickles): words in the file name.
FILENAME_HINTS: tuple[tuple[re.Pattern[str], Detection], ...] = (
    (re.compile(r"esrgan|upscal|_x[248]|x[248]plus", re.I), Detection("esrgan", "upscaler")),
    (re.compile(r"taesd|\btae", re.I), Detection("taesd", "taesd")),
    (re.compile(r"lora|lycoris", re.I), Detection(UNKNOWN, "lora")),
    (re.compile(r"control", re.I), Detection("controlnet", "controlnet")),
    (re.compile(r"\bvae\b|_vae|vae_|^ae\.", re.I), Detection("vae", "vae")),
)


def _matches(r: Rule, blob: str) -> bool:
    return all(p.search(blob) for p in r.require) and not any(p.search(blob) for p in r.exclude)


def _first(rules: tuple[Rule, ...], blob: str) -> Rule | None:
    return next((r for r in rules if _matches(r, blob)), None)


def _widest(
    header: FileHeader, pick: Callable[[str], bool], dim: int, default: int | None
) -> int | None:
    for name, info in header.tensors.items():
        if pick(name) and len(info.shape) > dim:
            return _dim(info, dim)
    return default


def _dim(info: TensorInfo, index: int) -> int:
    return info.shape[index]


def _sd1_or_sd2(header: FileHeader) -> str:
    # Cross-attention context width: 768 (CLIP-L) is SD1.x, 1024 (OpenCLIP-H) is SD2.x.
    width = _widest(header, lambda n: n.endswith("attn2.to_k.weight"), 1, 768)
    return "sd2" if width == 1024 else "sd1"


def _clip_width(header: FileHeader) -> str:
    # Hidden width of the CLIP text model: 768 -> CLIP-L (SD1, Flux, SD3), 1280 -> CLIP-G.
    width = _widest(header, lambda n: n.endswith("token_embedding.weight"), 1, None)
    if width is None:
        width = _widest(header, lambda n: "final_layer_norm.weight" in n, 0, 768)
    return "clip_g" if width == 1280 else "clip_l"


def _refine(arch: str, header: FileHeader, blob: str) -> tuple[str, str | None]:
    if arch == "sd1":
        return _sd1_or_sd2(header), None
    if arch == "clip_l":
        return _clip_width(header), None
    if arch == "flux2":
        return arch, ("dev" if _FLUX2_DEV.search(blob) else "klein")
    return arch, None


def _lora_base_blob(names: list[str]) -> str:
    # Strip the LoRA suffixes so the base tensor names can run through the diffusion rules.
    base = (re.split(r"\.(?:lora|hada|lokr|alpha)", n, maxsplit=1)[0] for n in names)
    return "\n".join(sorted(set(base)))


def _lora_architecture(header: FileHeader, names: list[str]) -> str:
    found = _first(DIFFUSION_RULES, _lora_base_blob(names))
    if found is None:
        return UNKNOWN
    if found.architecture in {"flux", "flux2", "chroma"}:
        # Flux.1, Flux.2 and Chroma LoRAs all target double_blocks/single_blocks: the names
        # cannot tell them apart, and a wrong guess would refuse a good LoRA. Say "unknown".
        return UNKNOWN
    if found.architecture == "sd1":
        return _sd1_or_sd2(header)
    return found.architecture


def _from_metadata(header: FileHeader) -> Detection | None:
    hint = str(header.metadata.get("general.architecture", "")).lower()
    arch = GGUF_ARCH_HINTS.get(hint)
    if arch is None:
        return None
    return Detection(arch, "text_encoder" if arch in _TEXT_ENCODER_ARCHS else "diffusion_model")


def detect(header: FileHeader, filename: str = "") -> Detection:
    """Architecture and role of a model file from its header (never loads weights).

    ``filename`` is only a last-resort hint for files whose tensors are unknown (pickles).
    """
    names = list(header.tensors)
    if not names:
        return _from_metadata(header) or _from_filename(filename)
    blob = "\n".join(names)
    found = _first(COMPONENT_RULES, blob)
    if found is not None:
        if found.role == "lora":
            return Detection(_lora_architecture(header, names), "lora")
        return Detection(found.architecture, found.role or UNKNOWN)
    found = _first(DIFFUSION_RULES, blob)
    if found is not None:
        arch, variant = _refine(found.architecture, header, blob)
        role = "checkpoint" if _BUNDLE.search(blob) else "diffusion_model"
        return Detection(arch, role, variant)
    found = _first(STANDALONE_RULES, blob)
    if found is not None:
        arch, variant = _refine(found.architecture, header, blob)
        return Detection(arch, found.role or UNKNOWN, variant)
    return _from_metadata(header) or Detection(UNKNOWN, UNKNOWN)


def _from_filename(filename: str) -> Detection:
    for pattern, detection in FILENAME_HINTS:
        if pattern.search(filename):
            return detection
    return Detection(UNKNOWN, UNKNOWN)


DEFAULT_ESRGAN_SCALE = 4
"""Scale assumed (and shown) for an ESRGAN file whose tensor names do not tell it: the larger
one, so a size check made with it errs on the safe side."""


def esrgan_scale(tensor_names: Iterable[str]) -> int | None:
    """An ESRGAN file's native scale from its tensor names, as stable-diffusion.cpp infers it.

    RealESRGAN naming: ``conv_up2`` -> 4x, only ``conv_up1`` -> 2x. None when the names do not
    tell (old ESRGAN naming, unknown layouts).
    """
    names = set(tensor_names)
    if "conv_up2.weight" in names:
        return 4
    if "conv_up1.weight" in names:
        return 2
    return None
