"""What :class:`sdrest.Generator` takes and gives: request fields from keyword arguments, input
images, and the seed and parameters every generated image carries.

Light on purpose (no service, no web framework): ``sdrest generate --server`` builds its request
body here too.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from sdrest.errors import InvalidRequestError, JobFailedError
from sdrest.images import encode_image, image_to_b64, parse_infotext
from sdrest.schemas import Job

ImageInput = Image.Image | str | Path | bytes
"""An input image: a PIL image, a file path, or encoded bytes (PNG, JPEG, WebP...)."""

FORMATS_BY_SUFFIX = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}

INFO_KEY = "sdrest"
"""``image.info[INFO_KEY]`` holds the image's :class:`ImageInfo`."""


class GenerationCancelledError(JobFailedError):
    """The generation was cancelled (:meth:`Generator.cancel`, an interrupt, a stopped task)."""


@dataclass(frozen=True)
class ImageInfo:
    """Where a generated image came from. ``image_info(image)`` reads it back.

    ``parameters`` holds the infotext's ``Key: value`` pairs as strings (``"Steps"``,
    ``"Sampler"``, ``"CFG scale"``, ``"Seed"``, ``"Size"``, ``"Model"``...).
    """

    seed: int
    prompt: str = ""
    negative_prompt: str = ""
    infotext: str = ""
    """The AUTOMATIC1111 infotext, as embedded in the file (PNG ``parameters`` chunk)."""
    parameters: dict[str, str] = field(default_factory=dict)
    job_id: str = ""
    index: int = 0
    path: Path | None = None
    """The file the service wrote (with the infotext embedded). It lives as long as the
    generator, or until the job expires when ``data_dir`` was given."""


def image_info(image: Image.Image) -> ImageInfo:
    """The seed and parameters of an image from a :class:`~sdrest.Generator`, or of a PNG file
    sdrest or AUTOMATIC1111 wrote (``image_info(Image.open("cat.png"))``, read from its
    infotext). ``ValueError`` when the image carries neither."""
    info = image.info.get(INFO_KEY)
    if isinstance(info, ImageInfo):
        return info
    text = image.info.get("parameters")
    if not isinstance(text, str):
        raise ValueError("the image carries no generation parameters")
    parsed = parse_infotext(text)
    prompt, negative = parsed.pop("prompt"), parsed.pop("negative_prompt")
    seed = int(parsed["Seed"]) if parsed.get("Seed", "").lstrip("-").isdigit() else -1
    return ImageInfo(seed, prompt, negative, text, parsed)


def with_info(image: Image.Image, info: ImageInfo) -> Image.Image:
    """Attach ``info`` to ``image`` (``info["sdrest"]``, ``["seed"]`` and ``["parameters"]``)."""
    image.info[INFO_KEY] = info
    image.info["seed"] = info.seed
    if info.infotext:
        image.info["parameters"] = info.infotext
    return image


def info_for(job: Job, index: int, path: Path) -> ImageInfo:
    """The :class:`ImageInfo` of output ``index`` of a completed job."""
    assert job.result is not None
    ref = job.result.images[index]
    texts = job.result.infotexts
    text = texts[index] if len(texts) == len(job.result.images) else ""
    parsed = parse_infotext(text) if text else {}
    request = job.request
    return ImageInfo(
        seed=ref.seed,
        prompt=request.prompt if request is not None else "",
        negative_prompt=request.negative_prompt if request is not None else "",
        infotext=text,
        parameters={k: v for k, v in parsed.items() if k not in ("prompt", "negative_prompt")},
        job_id=job.id,
        index=index,
        path=path,
    )


def output_format(path: str | Path) -> str:
    """png, jpeg or webp from a file name's suffix (400-style error for anything else)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS_BY_SUFFIX:
        raise InvalidRequestError(
            f"{path}: unknown image type {suffix!r}; use .png, .jpg or .webp", field="output"
        )
    return FORMATS_BY_SUFFIX[suffix]


def save_image(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` with its infotext embedded (PNG ``parameters`` chunk, or EXIF for JPEG
    and WebP), as the server writes its outputs; the format follows the suffix."""
    target = Path(path)
    text = image.info.get("parameters")
    if text is None and isinstance(image.info.get(INFO_KEY), ImageInfo):
        text = image.info[INFO_KEY].infotext or None
    target.write_bytes(encode_image(image, output_format(target), infotext=text))
    return target


def input_b64(image: ImageInput, name: str) -> str:
    """An input image as the base64 text a request carries (PNG for a PIL image).

    Blocking (encodes or reads a file): call it off the event loop."""
    if isinstance(image, Image.Image):
        out = io.BytesIO()
        image.save(out, "PNG", compress_level=1)
        return image_to_b64(out.getvalue())
    if isinstance(image, bytes):
        return image_to_b64(image)
    if isinstance(image, str | Path):
        try:
            return image_to_b64(Path(image).expanduser().read_bytes())
        except OSError as exc:
            raise InvalidRequestError(f"{name}: {exc}", field=name) from exc
    raise TypeError(f"{name} must be a PIL image, a path or bytes, not {type(image).__name__}")


def request_layer(
    prompt: str,
    *,
    negative_prompt: str | None = None,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    cfg_scale: float | None = None,
    sampler: str | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
    batch_count: int | None = None,
    strength: float | None = None,
    model: str | None = None,
    loras: Mapping[str, float] | None = None,
    output_format: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The canonical request fields (an ``img_gen`` body) the caller set, and only those: what
    is left out takes the model's preset defaults, then the request's own. ``fields`` adds any
    other :class:`~sdrest.ImgGenRequest` field (``{"vae_tiling_params": {"enabled": True}}``)."""
    body: dict[str, Any] = dict(fields or {})
    top = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "width": width,
        "height": height,
        "seed": seed,
        "batch_count": batch_count,
        "strength": strength,
        "model": model,
        "output_format": output_format,
    }
    body.update({k: v for k, v in top.items() if v is not None})
    sample: dict[str, Any] = dict(body.get("sample_params") or {})
    given = {"sample_steps": steps, "sample_method": sampler, "scheduler": scheduler}
    sample.update({k: v for k, v in given.items() if v is not None})
    if cfg_scale is not None:
        sample["guidance"] = {**(sample.get("guidance") or {}), "txt_cfg": cfg_scale}
    if sample:
        body["sample_params"] = sample
    if loras:
        body["lora"] = [{"path": name, "multiplier": weight} for name, weight in loras.items()]
    return body
