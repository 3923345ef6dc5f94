"""``POST /api/models/convert``: quantize a model file to GGUF with the library's convert.

The conversion must run on the engine's one native thread (the library is not safe to call from
two threads), so it needs an engine with an ``async convert(input_path, output_path,
weight_type)`` call; until the engine has one, the route checks its input and answers 501. With
it, the conversion runs in the background after the job in progress (the engine serializes it
with generations); the new file shows in ``/api/models`` (and as a ``/ws`` ``system_update``)
once written. The library reports no progress for conversions.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest.api.common import JSONResponse, read_body
from sdrest.api.rest.models import find_model
from sdrest.api.rest.schemas import ConvertBody
from sdrest.api.rest.translate import decode
from sdrest.auth import require
from sdrest.errors import ConflictError, InvalidRequestError, NotImplementedFeatureError
from sdrest.models import ModelPreset
from sdrest.service import SdrestService
from sdrest.settings import WeightType

logger = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(ConvertBody)
QUANT_TYPES: tuple[str, ...] = tuple(t for t in WeightType.__args__ if t != "default")  # type: ignore[attr-defined]


def _service(request: Request) -> SdrestService:
    service: SdrestService = request.app.state.service
    return service


def plan_output(service: SdrestService, source: Path, quant: str, output: str | None) -> Path:
    """Where the converted file goes: ``output`` (relative to the models folder, ``.gguf``) or
    ``<source stem>.<quant>.gguf`` beside the source. Never outside the models folder, never over
    an existing file."""
    root = service.registry.models_dir.resolve()
    if output is None:
        target = source.with_name(f"{source.stem}.{quant}.gguf")
    else:
        rel = Path(output)
        if rel.is_absolute() or ".." in rel.parts or rel.suffix.lower() != ".gguf":
            raise InvalidRequestError(
                "output_path must be a relative .gguf path inside the models folder",
                field="output_path",
            )
        target = root / rel
    # resolve() follows a symlinked parent folder: the real place must still be inside.
    if not target.parent.resolve().is_relative_to(root):
        raise InvalidRequestError(
            "output_path leads outside the models folder", field="output_path"
        )
    if target.exists():
        raise ConflictError(f"{target.name} already exists", field="output_path")
    return target


async def _run(service: SdrestService, source: Path, target: Path, quant: str) -> None:
    engine: Any = service.engine
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        await engine.convert(str(source), str(target), quant)
        logger.info("converted %s to %s (%s)", source.name, target.name, quant)
    except Exception:
        logger.exception("converting %s to %s failed", source.name, target.name)
    finally:
        await service.refresh_models()


async def convert_model(request: Request) -> Response:
    """Check the request, then 501 without an engine convert call, else 202 and convert."""
    require(request, "models:manage")
    body = decode(await read_body(request, 64 * 1024), _decoder)
    quant = body.quantization_type.strip().lower()
    if quant not in QUANT_TYPES:
        raise InvalidRequestError(
            f"quantization_type must be one of {', '.join(QUANT_TYPES)}", field="quantization_type"
        )
    service = _service(request)
    model = await asyncio.to_thread(find_model, service, body.model_name)
    if isinstance(model, ModelPreset):
        raise InvalidRequestError("a preset is several files: convert one file", field="model_name")
    source = Path(model.path)
    target = await asyncio.to_thread(plan_output, service, source, quant, body.output_path)
    if getattr(service.engine, "convert", None) is None:
        raise NotImplementedFeatureError(
            "model conversion is not available yet: the engine has no convert call on its native"
            " thread (use `sd -M convert` from stable-diffusion.cpp meanwhile)"
        )
    tasks: set[asyncio.Task[None]] = request.app.state.system.background
    task = asyncio.create_task(_run(service, source, target, quant), name="sdrest-convert")
    tasks.add(task)  # a strong reference until it finishes
    task.add_done_callback(tasks.discard)
    rel = str(target.resolve().relative_to(service.registry.models_dir.resolve()))
    return JSONResponse(
        {
            "status": "started",
            "message": "Model conversion started; the file appears in /api/models when done",
            "model": model.name,
            "quantization_type": quant,
            "output_path": rel,
        },
        status_code=202,
    )


CONVERT_ROUTES: list[BaseRoute] = [Route("/models/convert", convert_model, methods=["POST"])]
"""The conversion route."""
