"""``/v1/images/edits``: uploaded files and form fields -> one canonical request (pure, CPU-bound).

OpenAI's mask convention is the opposite of stable-diffusion.cpp's: OpenAI marks the area to edit
with *transparent* pixels (of the mask, or of the image itself when no mask is sent), while the
library repaints where its mask is *white*. Masks are converted here, once, so the canonical
request always carries a library mask. A mask without an alpha channel is read the library's
way (white = repaint), which is what A1111-style tools send.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from sdrest.api.openai.schemas import EditFields
from sdrest.api.openai.translate import ImagesJob, ModelChoice, ParsedBody, build_request
from sdrest.decode_gate import DecodeHold
from sdrest.errors import InvalidRequestError
from sdrest.images import (
    alpha_to_mask,
    has_alpha,
    image_to_b64,
    open_image_bytes,
    png_b64,
    to_mask,
)
from sdrest.schemas import RequestLayer
from sdrest.settings import Limits

REFERENCE_ARCHITECTURES: frozenset[str] = frozenset({"flux2"})
"""Architectures that edit through reference images (Flux.2). Flux.1 Kontext and Qwen-Image-Edit
cannot be told from their base models by the file header: pick ``edit_mode`` for them."""
MAX_EDIT_IMAGES = 16
"""OpenAI's own limit on ``image[]``; also the canonical request's ``ref_images`` limit."""


def library_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An OpenAI mask upload as a library mask ("L", white = repaint)."""
    if mask.size != size:
        raise InvalidRequestError(
            f"mask is {mask.width}x{mask.height} but the image is {size[0]}x{size[1]};"
            " they must be the same size",
            field="mask",
        )
    if not has_alpha(mask):
        return to_mask(mask)
    converted = alpha_to_mask(mask)
    if converted is None:
        raise InvalidRequestError(
            "mask has no fully transparent pixels: transparent marks the area to edit",
            field="mask",
        )
    return converted


def choose_mode(fields: EditFields, masked: bool, reference_model: bool) -> str:
    """``img2img`` or ``reference`` (see :attr:`EditFields.edit_mode`); ``masked``: a mask was
    uploaded or the first image has transparent pixels."""
    if fields.edit_mode != "auto":
        return fields.edit_mode
    if reference_model and not masked:
        return "reference"
    return "img2img"


def edit_to_request(
    parsed: ParsedBody[EditFields],
    images: Sequence[bytes],
    mask: bytes | None,
    model: ModelChoice,
    *,
    limits: Limits,
    hold: DecodeHold | None = None,
) -> ImagesJob:
    """Decode and check the uploads and build the canonical request (``model``: chosen
    with ``edit=True``, for its architecture).

    img2img: the first image is the init image, the others reference images; the mask is the
    ``mask`` upload or, failing that, the first image's transparent pixels; a masked edit defaults
    to strength 1.0 (the edited area is redrawn, as OpenAI does). reference: every image is a
    reference image and nothing is masked. The output takes the first image's size unless
    ``size`` (or the native block) says otherwise.
    """
    decoded = _open_images(images, limits, hold)
    first = decoded[0]
    fields = parsed.fields
    # The first image's own transparency, scanned once: it picks the mode and is the mask.
    transparent = alpha_to_mask(first) if mask is None else None
    reference_model = model.architecture in REFERENCE_ARCHITECTURES
    mode = choose_mode(fields, mask is not None or transparent is not None, reference_model)
    implied: RequestLayer = {"width": first.width, "height": first.height}
    if mode == "reference":
        if mask is not None:
            raise InvalidRequestError("a mask needs edit_mode img2img", field="mask")
        attached: RequestLayer = {"ref_images": [image_to_b64(data) for data in images]}
    else:
        attached = _img2img_images(images, mask, transparent, first.size, limits, hold)
        if "mask_image" in attached:
            implied["strength"] = 1.0
    if fields.strength is not None:
        attached["strength"] = fields.strength
    return build_request(parsed, model, implied=implied, attached=attached)


def _open_images(
    images: Sequence[bytes], limits: Limits, hold: DecodeHold | None
) -> list[Image.Image]:
    if not images:
        raise InvalidRequestError(
            "image is required (a file in `image` or `image[]`)", field="image"
        )
    if len(images) > MAX_EDIT_IMAGES:
        raise InvalidRequestError(f"at most {MAX_EDIT_IMAGES} images", field="image")
    pixels = limits.max_input_pixels
    return [
        open_image_bytes(data, f"image[{i}]", max_pixels=pixels, hold=hold)
        for i, data in enumerate(images)
    ]


def _img2img_images(
    images: Sequence[bytes],
    mask: bytes | None,
    transparent: Image.Image | None,
    size: tuple[int, int],
    limits: Limits,
    hold: DecodeHold | None,
) -> RequestLayer:
    """The init image, the other images as references, and the library mask if any."""
    attached: RequestLayer = {
        "init_image": image_to_b64(images[0]),
        "ref_images": [image_to_b64(data) for data in images[1:]],
    }
    if mask is not None:
        uploaded = open_image_bytes(mask, "mask", max_pixels=limits.max_input_pixels, hold=hold)
        converted: Image.Image | None = library_mask(uploaded, size)
    else:
        converted = transparent
    if converted is not None:
        attached["mask_image"] = png_b64(converted)
    return attached
