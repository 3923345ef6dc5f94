"""``POST /api/models/convert``: quantize a model file to GGUF with the library's convert.

A conversion is a job like any other (kind ``convert``): queued behind generations, run on the
engine's one native thread, shown in the queue, ``/ws`` and ``/api/queue/job/{id}``. The file is
written under a ``.part`` name and renamed when complete, then the registry is rescanned, so the
new model shows in ``/api/models`` once it is usable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest.api.common import JSONResponse, read_body, service_of
from sdrest.api.rest.models import find_model
from sdrest.api.rest.schemas import ConvertBody
from sdrest.api.rest.translate import decode
from sdrest.auth import principal_of, require
from sdrest.errors import InvalidRequestError
from sdrest.models import ModelPreset
from sdrest.planning import convert_target
from sdrest.schemas import ConvertRequest
from sdrest.settings import WeightType

_decoder = msgspec.json.Decoder(ConvertBody)
QUANT_TYPES: tuple[str, ...] = tuple(t for t in WeightType.__args__ if t != "default")  # type: ignore[attr-defined]


async def convert_model(request: Request) -> Response:
    """Check the request, then 501 without an engine convert call, else 202 and convert."""
    require(request, "models:manage")
    body = decode(await read_body(request, 64 * 1024), _decoder)
    quant = body.quantization_type.strip().lower()
    if quant not in QUANT_TYPES:
        raise InvalidRequestError(
            f"quantization_type must be one of {', '.join(QUANT_TYPES)}", field="quantization_type"
        )
    service = service_of(request)
    model = await asyncio.to_thread(find_model, service, body.model_name)
    if isinstance(model, ModelPreset):
        raise InvalidRequestError("a preset is several files: convert one file", field="model_name")
    root = service.registry.models_dir.resolve()
    source = Path(model.path)
    target = await asyncio.to_thread(convert_target, root, source, quant, body.output_path)
    rel = str(target.relative_to(root))
    job = await service.submit_convert(
        ConvertRequest(model=model.name, weight_type=quant, output_path=rel),
        owner=principal_of(request).username,
        family="rest",
    )
    return JSONResponse(
        {
            "request_id": job.id,
            "status": "queued",
            "message": "Model conversion queued; the file appears in /api/models when done",
            "model": model.name,
            "quantization_type": quant,
            "output_path": rel,
        },
        status_code=202,
    )


CONVERT_ROUTES: list[BaseRoute] = [Route("/models/convert", convert_model, methods=["POST"])]
"""The conversion route."""
