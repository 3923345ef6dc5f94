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


async def convert_model(request: Request) -> Response:
    """Check the request and queue the conversion (202); the answer names the file it writes."""
    body = decode(await read_body(request, 64 * 1024), _decoder)
    quant = body.quantization_type.strip().lower()
    if quant not in QUANT_TYPES:
        raise InvalidRequestError(
            f"quantization_type must be one of {', '.join(QUANT_TYPES)}", field="quantization_type"
        )
    service = service_of(request)
    model = await asyncio.to_thread(service.models.find, body.model_name)
    if isinstance(model, ModelPreset):
        raise InvalidRequestError("a preset is several files: convert one file", field="model_name")
    job = await service.submit_convert(
        ConvertRequest(model=model.name, weight_type=quant, output_path=body.output_path),
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
