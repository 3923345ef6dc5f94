"""``/sdapi/v1``: the AUTOMATIC1111 family's complete route index and its sub-application.

Endpoints live in ``generation_handlers`` (txt2img, img2img, progress, options...),
``info_handlers`` (listings, model management, png-info) and ``extras_handlers`` (upscaling).
Errors render in A1111's shapes (``errors``).
"""

from __future__ import annotations

from types import NoneType
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from sdrest.api.common import family_exception_handlers
from sdrest.api.routing import NO_BODY, Query, route
from sdrest.api.sdapi import extras_handlers as extras
from sdrest.api.sdapi import generation_handlers as generation
from sdrest.api.sdapi import info_handlers as info
from sdrest.api.sdapi import responses as r
from sdrest.api.sdapi.errors import render_error
from sdrest.api.sdapi.extras import ExtrasBatchRequest, ExtrasSingleRequest
from sdrest.api.sdapi.schemas import (
    Img2ImgBody,
    InterrogateRequest,
    OverrideSettings,
    PngInfoRequest,
    Txt2ImgBody,
)
from sdrest.api.sdapi.state import OptionsStore
from sdrest.service import SdrestService

_SKIP_IMAGE = Query("skip_current_image", {"type": "boolean"}, "Leave out the live preview image.")

GENERATION_ROUTES: list[BaseRoute] = [
    route(
        "/txt2img", generation.txt2img, "POST", access="generate", body=Txt2ImgBody,
        answer=r.GenerationAnswer,
    ),
    route(
        "/img2img", generation.img2img, "POST", access="generate", body=Img2ImgBody,
        answer=r.GenerationAnswer,
    ),
    # Whoever may generate may watch it happen.
    route(
        "/progress", generation.progress, access="generate", query=(_SKIP_IMAGE,),
        answer=r.ProgressAnswer,
    ),
    route("/interrupt", generation.interrupt, "POST", access="generate", body=NO_BODY,
          answer=r.Empty),
    # A1111 skips one image of a batch; the native call cannot be split, so skip stops the job.
    route("/skip", generation.interrupt, "POST", access="generate", body=NO_BODY, answer=r.Empty),
    route("/samplers", generation.list_samplers, access="models:read", answer=list[r.SamplerItem]),
    route(
        "/schedulers", generation.list_schedulers, access="models:read",
        answer=list[r.SchedulerItem],
    ),
    # The options map is free-form: A1111's options, then whatever a client stored.
    route("/options", generation.get_options, access="models:read", answer=dict[str, Any]),
    route(
        "/options", generation.set_options, "POST", access="models:manage",
        body=OverrideSettings, answer=NoneType,
    ),
    route("/cmd-flags", generation.cmd_flags, access="models:read", answer=dict[str, Any]),
]  # fmt: skip

INFO_ROUTES: list[BaseRoute] = [
    route("/upscalers", info.get_upscalers, access="models:read", answer=list[r.UpscalerItem]),
    route(
        "/latent-upscale-modes", info.latent_upscale_modes, access="models:read",
        answer=list[r.NameItem],
    ),
    route("/sd-models", info.get_sd_models, access="models:read", answer=list[r.SdModelItem]),
    route("/sd-vae", info.get_sd_vae, access="models:read", answer=list[r.SdVaeItem]),
    route("/sd-modules", info.sd_modules, access="models:read", answer=list[r.SdVaeItem]),
    route("/loras", info.get_loras, access="models:read", answer=list[r.LoraItem]),
    route("/embeddings", info.get_embeddings, access="models:read", answer=r.Embeddings),
    route(
        "/realesrgan-models", info.get_realesrgan_models, access="models:read",
        answer=list[r.RealesrganItem],
    ),
    route("/memory", info.get_memory, access="models:read", answer=r.MemoryReport),
    route("/scripts", info.scripts, access="models:read", answer=r.Scripts),
    route("/script-info", info.script_info, access="models:read", answer=list[r.ScriptInfo]),
    route("/face-restorers", info.nothing, access="models:read", answer=list[r.FaceRestorer]),
    route("/prompt-styles", info.nothing, access="models:read", answer=list[r.PromptStyle]),
    route("/hypernetworks", info.nothing, access="models:read", answer=list[r.Hypernetwork]),
    route("/extensions", info.nothing, access="models:read", answer=list[r.Extension]),
    *(
        route(path, info.refresh, "POST", access="models:manage", body=NO_BODY, answer=NoneType)
        for path in (
            "/refresh-checkpoints", "/refresh-vae", "/refresh-loras", "/refresh-embeddings"
        )
    ),
    route(
        "/unload-checkpoint", info.unload_checkpoint, "POST", access="models:manage",
        body=NO_BODY, answer=r.Empty,
    ),
    route(
        "/reload-checkpoint", info.reload_checkpoint, "POST", access="models:manage",
        body=NO_BODY, answer=r.Empty,
    ),
    route(
        "/png-info", info.png_info, "POST", access="generate", body=PngInfoRequest,
        answer=r.PngInfo,
    ),
    # No interrogator: the route answers 501 saying so, rather than a bare 404.
    route(
        "/interrogate", info.interrogate, "POST", access="generate", body=InterrogateRequest,
        answer=NoneType,
    ),
    route(
        "/extra-single-image", extras.extra_single_image, "POST", access="generate",
        body=ExtrasSingleRequest, answer=r.ExtrasSingleAnswer,
    ),
    route(
        "/extra-batch-images", extras.extra_batch_images, "POST", access="generate",
        body=ExtrasBatchRequest, answer=r.ExtrasBatchAnswer,
    ),
]  # fmt: skip
"""Listings, model management, png-info and extras (mountable on their own: they need only
``app.state.service``)."""

ROUTES: list[BaseRoute] = [*GENERATION_ROUTES, *INFO_ROUTES]
"""Every route of the family."""


def create_sdapi_app(service: SdrestService) -> Starlette:
    """The family's sub-application over the one service; A1111-shaped errors throughout."""
    app = Starlette(routes=ROUTES, exception_handlers=family_exception_handlers(render_error))
    app.state.service = service
    app.state.options = OptionsStore()
    return app
