"""``POST /api/models/convert``: quantize a model file to GGUF with the library's convert.

A conversion is a job like any other (kind ``convert``): queued behind generations, run on the
engine's one native thread, shown in the queue, ``/ws`` and ``/api/queue/job/{id}``. The file is
written under a ``.part`` name and renamed when complete, then the registry is rescanned, so the
new model shows in ``/api/models`` once it is usable. Where it goes is planned once, when the
job is submitted (a path outside the models folder is a 400, an existing file a 409).
"""

from __future__ import annotations

import asyncio
import typing
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest.model_responses import ConvertReply
from sdrest.api.rest.schemas import ConvertBody
from sdrest.api.rest.translate import decode
from sdrest.auth import principal_of
from sdrest.errors import InvalidRequestError
from sdrest.models import ModelPreset
from sdrest.schemas import ConvertRequest
from sdrest.settings import WeightType

_decoder = msgspec.json.Decoder(ConvertBody)
QUANT_TYPES: tuple[str, ...] = tuple(t for t in typing.get_args(WeightType) if t != "default")
# llama.cpp's mix names, as the readme lists them (Q4_K_S): the library writes one type per
# tensor kind, with no small/medium/large mixes, so each maps onto its base k-quant.
QUANT_ALIASES: dict[str, str] = {
    f"q{bits}_k_{size}": f"q{bits}_k" for bits in (2, 3, 4, 5, 6) for size in ("s", "m", "l")
}


def quant_type(value: str) -> str:
    """The library's weight type for a requested ``quantization_type`` (400 naming the valid
    ones)."""
    quant = value.strip().lower()
    quant = QUANT_ALIASES.get(quant, quant)
    if quant not in QUANT_TYPES:
        raise InvalidRequestError(
            f"quantization_type must be one of {', '.join(QUANT_TYPES)} (or a k-quant mix name"
            " such as Q4_K_S, written as its base type)",
            field="quantization_type",
        )
    return quant


def relative_output(models_dir: Path, output: str | None) -> str | None:
    """An absolute ``output_path`` inside the models folder as the relative path planning
    takes; anything else unchanged (planning refuses what leaves the folder)."""
    if output is None or not Path(output).is_absolute() or "\x00" in output:
        return output
    try:
        return str(Path(output).resolve().relative_to(models_dir.resolve()))
    except ValueError:
        raise InvalidRequestError(
            "output_path must be inside the models folder", field="output_path"
        ) from None


async def convert_model(request: Request) -> Response:
    """Check the request and queue the conversion (202); the answer names the file it writes."""
    body = decode(await read_body(request, 64 * 1024), _decoder)
    quant = quant_type(body.quantization_type)
    service = service_of(request)
    model = await asyncio.to_thread(service.models.find, body.model_name)
    if isinstance(model, ModelPreset):
        raise InvalidRequestError("a preset is several files: convert one file", field="model_name")
    output = relative_output(service.models.models_dir, body.output_path)
    job = await service.submit_convert(
        ConvertRequest(model=model.name, weight_type=quant, output_path=output),
        owner=principal_of(request).username,
        family="rest",
    )
    assert job.convert is not None and job.convert.output_path is not None  # set by planning
    return JSONResponse(
        ConvertReply(
            request_id=job.id,
            status="queued",
            message="Model conversion queued; the file appears in /api/models when done",
            model=model.name,
            quantization_type=quant,
            output_path=job.convert.output_path,
        ),
        status_code=202,
    )
