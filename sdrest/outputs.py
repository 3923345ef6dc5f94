"""Job output files: encode once, write under ``{output_dir}/{job_id}/``, serve safely."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from sdrest import a1111_names
from sdrest.images import encode_image, extension
from sdrest.schemas import ImageRef, ImgGenRequest

_JOB_ID = re.compile(r"^job_[0-9a-f]+_[0-9a-f]+$")
_FILENAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(png|jpg|webp)$")


def output_url(job_id: str, filename: str, *, base_url: str = "", thumb: bool = False) -> str:
    """THE download URL of an output file, as ``/api`` serves it (public: the job id is the
    secret). Relative unless ``base_url`` is given; ``thumb`` for the 200 px JPEG thumbnail."""
    url = f"{base_url.rstrip('/')}/api/queue/job/{quote(job_id)}/output/{quote(filename)}"
    return url + "?thumb=true" if thumb else url


def infotext_params(
    request: ImgGenRequest, seed: int, width: int, height: int, model: str
) -> dict[str, object]:
    """The ``Key: value`` part of an AUTOMATIC1111 infotext for one image, in A1111's names and
    order (``Sampler: DPM++ 2M``, ``Schedule type: Karras``, the hires keys) so png-info and
    "send to txt2img" read it back as the same request. ``Size`` is the generation's size, as
    A1111 writes it, when the output's differs on purpose (hires fix, SD upscale, inpainting
    of the mask's area); else the image's."""
    sample = request.sample_params
    params: dict[str, object] = {"Steps": sample.sample_steps}
    params["Sampler"] = a1111_names.sampler_name(sample.sample_method)
    params["Schedule type"] = a1111_names.scheduler_label(sample.scheduler)
    params["CFG scale"] = sample.guidance.txt_cfg
    params["Seed"] = seed
    masked_area = request.inpaint.full_res and request.mask_image is not None
    if request.hires.enabled or request.tiled_upscale.enabled or masked_area:
        width, height = request.width, request.height
    params["Size"] = f"{width}x{height}"
    params["Model"] = model
    if request.init_image is not None:
        params["Denoising strength"] = request.strength
    if request.clip_skip > 1:  # A1111 leaves out 1 (no skip), and png-info reads it back as 1
        params["Clip skip"] = request.clip_skip
    if request.model_options.tiling:
        params["Tiling"] = True
    params.update(_hires_params(request))
    params.update(_img2img_params(request))
    params["Version"] = "sdrest"
    return params


def _hires_params(request: ImgGenRequest) -> dict[str, object]:
    """A1111's hires keys, when the hires fix ran."""
    hires = request.hires
    if not hires.enabled:
        return {}
    params: dict[str, object] = {"Denoising strength": hires.denoising_strength}
    if hires.width or hires.height:
        hr_width, hr_height = hires.target_size(request.width, request.height)
        params["Hires resize"] = f"{hr_width}x{hr_height}"
    else:
        params["Hires upscale"] = hires.scale
    if hires.steps:
        params["Hires steps"] = hires.steps
    upscaler = a1111_names.HIRES_UPSCALER_NAMES.get(hires.upscaler, hires.upscaler_model)
    params["Hires upscaler"] = upscaler
    return params


def _img2img_params(request: ImgGenRequest) -> dict[str, object]:
    """A1111's keys of inpainting and of the SD upscale script."""
    params: dict[str, object] = {}
    inpaint = request.inpaint
    if request.mask_image is not None and inpaint.mask_blur:
        params["Mask blur"] = inpaint.mask_blur
    if request.mask_image is not None and inpaint.full_res:
        params["Inpaint area"] = "Only masked"
        params["Masked area padding"] = inpaint.full_res_padding
    tiled = request.tiled_upscale
    if tiled.enabled:
        params["SD upscale overlap"] = tiled.overlap
        upscaler = a1111_names.HIRES_UPSCALER_NAMES.get(tiled.upscaler, tiled.upscaler_model)
        params["SD upscale upscaler"] = upscaler
    return params


def job_dir(output_dir: Path, job_id: str) -> Path:
    """The folder of one job; refuses anything that is not a job id."""
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return output_dir / job_id


def write_images(
    output_dir: Path,
    job_id: str,
    images: list[Image.Image],
    seeds: list[int],
    fmt: str,
    quality: int,
    infotexts: list[str | None],
) -> list[ImageRef]:
    """Encode each image once and write it; returns the references the job records."""
    folder = job_dir(output_dir, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for index, (image, seed, info) in enumerate(zip(images, seeds, infotexts, strict=True)):
        filename = f"image_{index}.{extension(fmt)}"  # the spec's name; old jobs keep "0.png"
        data = encode_image(image, fmt, quality=quality, infotext=info)
        tmp = folder / f".{filename}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / filename)  # readers never see a half-written file
        refs.append(ImageRef(index, filename, image.width, image.height, seed))
    return refs


def output_path(output_dir: Path, job_id: str, filename: str) -> Path:
    """Path of an output file; raises ValueError for anything that could leave the job folder."""
    if not _FILENAME.fullmatch(filename):
        raise ValueError(f"not an output file name: {filename!r}")
    return job_dir(output_dir, job_id) / filename


def remove_job_files(output_dir: Path, job_id: str) -> None:
    """Delete a job's folder (retention)."""
    shutil.rmtree(job_dir(output_dir, job_id), ignore_errors=True)
