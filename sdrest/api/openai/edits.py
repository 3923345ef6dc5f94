"""``/v1/images/edits``: uploaded files and form fields -> one canonical request (pure, CPU-bound).

OpenAI's mask convention is the opposite of stable-diffusion.cpp's: OpenAI marks the area to edit
with *transparent* pixels (of the mask, or of the image itself when no mask is sent), while the
library repaints where its mask is *white*. Masks are converted here, once, so the canonical
request always carries a library mask. A mask without an alpha channel is read the library's
way (white = repaint), which is what A1111-style tools send.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from PIL import Image

from sdrest.api.openai.schemas import EditFields
from sdrest.api.openai.translate import DefaultsFor, Translated, build_request, request_model
from sdrest.errors import InvalidRequestError
from sdrest.images import (
    alpha_to_mask,
    has_alpha,
    image_to_b64,
    open_image_bytes,
    png_b64,
    to_mask,
)
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
    fields: EditFields,
    images: Sequence[bytes],
    mask: bytes | None,
    known_models: Collection[str],
    defaults_for: DefaultsFor,
    *,
    limits: Limits,
    is_reference_model: Callable[[str | None], bool] = lambda name: False,
) -> Translated:
    """Decode and check the uploads and build the canonical request.

    img2img: the first image is the init image, the others reference images; the mask is the
    ``mask`` upload or, failing that, the first image's transparent pixels; a masked edit defaults
    to strength 1.0 (the edited area is redrawn, as OpenAI does). reference: every image is a
    reference image and nothing is masked. The output takes the first image's size unless
    ``size`` (or the native block) says otherwise.
    """
    if not images:
        raise InvalidRequestError(
            "image is required (a file in `image` or `image[]`)", field="image"
        )
    if len(images) > MAX_EDIT_IMAGES:
        raise InvalidRequestError(f"at most {MAX_EDIT_IMAGES} images", field="image")
    pixels = limits.max_input_pixels
    decoded = [
        open_image_bytes(data, f"image[{i}]", max_pixels=pixels) for i, data in enumerate(images)
    ]
    first = decoded[0]
    # The first image's own transparency, scanned once: it picks the mode and is the mask.
    transparent = alpha_to_mask(first) if mask is None else None
    reference_model = is_reference_model(request_model(fields, known_models))
    mode = choose_mode(fields, mask is not None or transparent is not None, reference_model)
    implied: dict[str, Any] = {"width": first.width, "height": first.height}
    attached: dict[str, Any] = {}
    if mode == "reference":
        if mask is not None:
            raise InvalidRequestError("a mask needs edit_mode img2img", field="mask")
        attached["ref_images"] = [image_to_b64(data) for data in images]
    else:
        attached["init_image"] = image_to_b64(images[0])
        attached["ref_images"] = [image_to_b64(data) for data in images[1:]]
        if mask is not None:
            uploaded = open_image_bytes(mask, "mask", max_pixels=pixels)
            converted: Image.Image | None = library_mask(uploaded, first.size)
        else:
            converted = transparent
        if converted is not None:
            attached["mask_image"] = png_b64(converted)
            implied["strength"] = 1.0
    if fields.strength is not None:
        attached["strength"] = fields.strength
    return build_request(fields, known_models, defaults_for, implied=implied, attached=attached)
