"""Job output files: encode once, write under ``{output_dir}/{job_id}/``, serve safely."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

from PIL import Image

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
    """The ``Key: value`` part of an AUTOMATIC1111 infotext for one image."""
    sample = request.sample_params
    params: dict[str, object] = {"Steps": sample.sample_steps}
    params["Sampler"] = sample.sample_method or "default"
    if sample.scheduler:
        params["Schedule type"] = sample.scheduler
    params["CFG scale"] = sample.guidance.txt_cfg
    params["Seed"] = seed
    params["Size"] = f"{width}x{height}"
    params["Model"] = model
    if request.init_image is not None:
        params["Denoising strength"] = request.strength
    if request.clip_skip > 0:
        params["Clip skip"] = request.clip_skip
    params["Version"] = "sdrest"
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
        filename = f"{index}.{extension(fmt)}"
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
