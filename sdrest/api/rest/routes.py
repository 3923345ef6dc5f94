"""The stable-diffusion.cpp-rest family under ``/api``: its complete route index and its
sub-application.

Every error renders as ``{"error": {"message", "code", "status_code", "request_id",
"timestamp", "field"?}}`` (:class:`~sdrest.api.rest.responses.RestError`) and every response
carries ``X-Request-ID``. ``/api/health`` is served by the main app before this mount (it must
stay cheap and public); the ``/ws`` WebSocket is mounted by the main app too
(:mod:`sdrest.api.rest.ws`).

Match order: the first route whose path and method match wins, so within a prefix the fixed
paths come before the parameterised ones (``/models/convert`` before ``/models/{model_id}``,
``/queue/job/{job_id}/output/{filename}`` before ``/queue/job/{job_id}``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from sdrest.api.rest import (
    auth_handlers,
    convert_handlers,
    download_handlers,
    generation_handlers,
    image_handlers,
    models_handlers,
    outputs_handlers,
    queue_handlers,
    system_handlers,
    users_handlers,
    utility_handlers,
    v1_handlers,
)
from sdrest.api.rest.auth_handlers import LoginBody
from sdrest.api.rest.auth_responses import (
    LoginReply,
    LogoutReply,
    MeReply,
    TokenRefreshReply,
    TokenValidReply,
)
from sdrest.api.rest.errors import RequestIdMiddleware, render_error
from sdrest.api.rest.image_handlers import DOWNLOAD_QUERY
from sdrest.api.rest.image_tools import CropBody, ResizeBody
from sdrest.api.rest.model_responses import (
    BatchReply,
    ConvertReply,
    FileCheck,
    HashReply,
    ModelAction,
    ModelDownloadReply,
    ModelFolders,
    ModelListing,
    ModelReply,
    ModelStats,
    ModelTypes,
    RefreshReply,
)
from sdrest.api.rest.model_views import SORT_KEYS
from sdrest.api.rest.outputs_handlers import DEFAULT_THUMB
from sdrest.api.rest.responses import (
    CancelReply,
    ClearReply,
    DeleteReply,
    HistoryReply,
    JobReply,
    QueuedReply,
    QueueStatus,
    RestError,
)
from sdrest.api.rest.schemas import (
    BatchBody,
    CancelBody,
    ConvertBody,
    DownloadBody,
    GenerateBody,
    HashBody,
    UpscaleBody,
    ValidateModelBody,
)
from sdrest.api.rest.system_info import SystemState
from sdrest.api.rest.system_responses import (
    ConfigReply,
    RestartReply,
    StatusReply,
    SystemReply,
    VersionReply,
)
from sdrest.api.rest.users_handlers import (
    ChangePasswordBody,
    NewKeyBody,
    NewUserBody,
    RoleBody,
    SetPasswordBody,
)
from sdrest.api.rest.users_responses import (
    AccountList,
    AccountMessage,
    AccountView,
    CreatedKey,
    KeyList,
)
from sdrest.api.rest.utility_handlers import MODE_QUERY
from sdrest.api.rest.utility_responses import (
    DownloadReply,
    EstimateReply,
    ImageReply,
    ParametersReply,
    SamplersReply,
    SchedulersReply,
    ValidationReply,
)
from sdrest.api.rest.v1_handlers import V1GenerateBody, V1Result
from sdrest.api.routing import IMAGE_TYPES, JSON, NO_BODY, Query, route
from sdrest.errors import SdrestError
from sdrest.service import SdrestService

_FLAG = {"type": "boolean"}
_MODEL_QUERY = (
    Query("type", {"type": "string"}, "Model type (checkpoint, lora, vae, ...)."),
    Query("search", {"type": "string"}, "Substring of the name."),
    Query("architecture", {"type": "string"}, "Detected architecture (sd1, flux...)."),
    Query("loaded", _FLAG, "Only the loaded (or only the unloaded) models."),
    Query("sort_by", {"type": "string", "enum": list(SORT_KEYS)}, "Sort key."),
    Query("sort_order", {"type": "string", "enum": ["asc", "desc"]}, "Sort order."),
    Query("limit", {"type": "integer", "minimum": 0, "maximum": 10_000}, "Page size."),
    Query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "Page, from 1."),
)
_TYPE = Query("type", {"type": "string"}, "Pick among files of the same name by type.")
_HISTORY_QUERY = (
    Query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": queue_handlers.HISTORY_MAX_LIMIT},
        "Page size (default 50).",
    ),
    Query(
        "offset",
        {"type": "integer", "minimum": 0, "maximum": queue_handlers.HISTORY_MAX_OFFSET},
        "Jobs to skip (newest first).",
    ),
    Query(
        "status",
        {"type": "string", "enum": list(queue_handlers.HISTORY_STATUSES)},
        "Only jobs that ended so (default all).",
    ),
)
_THUMB = (
    Query("thumb", _FLAG, "Answer a JPEG thumbnail instead of the file."),
    Query(
        "size",
        {"type": "integer", "minimum": 50, "maximum": 500},
        f"Longest side of the thumbnail (with `thumb`; default {DEFAULT_THUMB}).",
    ),
)


_models = models_handlers
_queue = queue_handlers
_generation = generation_handlers
_users = users_handlers

ROUTES = [
    # -- /auth: login is public, the rest needs an identified caller ------------------------
    route(
        "/auth/login", auth_handlers.login, "POST", access="public", body=LoginBody,
        answer=LoginReply,
    ),
    route(
        "/auth/logout", auth_handlers.logout, "POST", access="identified", body=NO_BODY,
        answer=LogoutReply,
    ),
    route("/auth/validate", auth_handlers.validate, access="identified", answer=TokenValidReply),
    route(
        "/auth/refresh", auth_handlers.refresh, "POST", access="identified", body=NO_BODY,
        answer=TokenRefreshReply,
    ),
    route("/auth/me", auth_handlers.me, access="identified", answer=MeReply),
    # -- a signed-in caller's own password and keys; accounts and anyone's keys: admins ------
    route(
        "/auth/password", _users.change_my_password, "POST", access="identified",
        body=ChangePasswordBody, answer=AccountMessage,
    ),
    route("/auth/keys", _users.my_keys, access="identified", answer=KeyList),
    route(
        "/auth/keys", _users.create_my_key, "POST", access="identified", body=NewKeyBody,
        answer=CreatedKey, status=201,
    ),
    route(
        "/auth/keys/{key_id}", _users.revoke_my_key, "DELETE", access="identified",
        answer=AccountMessage,
    ),
    route("/users", _users.list_users, access="system:manage", answer=AccountList),
    route(
        "/users", _users.add_user, "POST", access="system:manage", body=NewUserBody,
        answer=AccountView, status=201,
    ),
    route(
        "/users/{username}", _users.remove_user, "DELETE", access="system:manage",
        answer=AccountMessage,
    ),
    route(
        "/users/{username}/role", _users.set_role, "POST", access="system:manage",
        body=RoleBody, answer=AccountView,
    ),
    route(
        "/users/{username}/password", _users.set_password, "POST", access="system:manage",
        body=SetPasswordBody, answer=AccountMessage,
    ),
    route(
        "/keys", _users.list_keys, access="system:manage", answer=KeyList,
        query=(Query("username", {"type": "string"}, "Only this account's keys."),),
    ),
    route(
        "/keys", _users.create_key, "POST", access="system:manage", body=NewKeyBody,
        answer=CreatedKey, status=201,
    ),
    route(
        "/keys/{key_id}", _users.revoke_key, "DELETE", access="system:manage",
        answer=AccountMessage,
    ),
    # -- server: status and version are public -----------------------------------------------
    route("/status", system_handlers.status, access="public", answer=StatusReply),
    route("/version", system_handlers.version, access="public", answer=VersionReply),
    route("/config", system_handlers.config, access="models:read", answer=ConfigReply),
    route("/system", system_handlers.system, access="models:read", answer=SystemReply),
    route(
        "/system/restart", system_handlers.restart, "POST", access="system:manage",
        body=NO_BODY, answer=RestartReply, status=202,
    ),
    # -- /models: the fixed paths, then /models/{model_id} -----------------------------------
    route(
        "/models", _models.list_models, access="models:read", query=_MODEL_QUERY,
        answer=ModelListing,
    ),
    route("/models/types", _models.model_types, access="models:read", answer=ModelTypes),
    route("/models/directories", _models.directories, access="models:read", answer=ModelFolders),
    route("/models/stats", _models.stats, access="models:read", answer=ModelStats),
    route(
        "/models/refresh", _models.refresh, "POST", access="models:manage", body=NO_BODY,
        answer=RefreshReply,
    ),
    route(
        "/models/batch", _models.batch, "POST", access="models:manage", body=BatchBody,
        answer=BatchReply,
    ),
    route(
        "/models/validate", _models.validate, "POST", access="models:read",
        body=ValidateModelBody, answer=FileCheck,
    ),
    route(
        "/models/hash", _models.hash_models, "POST", access="models:manage", body=HashBody,
        answer=HashReply,
    ),
    route(
        "/models/convert", convert_handlers.convert_model, "POST", access="models:manage",
        body=ConvertBody, answer=ConvertReply, status=202,
    ),
    route(
        "/models/download", download_handlers.download_model, "POST", access="models:manage",
        body=DownloadBody, answer=ModelDownloadReply, status=202,
    ),
    route(
        "/models/{model_id}", _models.get_model, access="models:read", query=(_TYPE,),
        answer=ModelReply,
    ),
    route(
        "/models/{model_id}/load", _models.load_model, "POST", access="models:manage",
        body=NO_BODY, answer=ModelAction,
    ),
    route(
        "/models/{model_id}/unload", _models.unload_model, "POST", access="models:manage",
        body=NO_BODY, answer=ModelAction,
    ),
    # -- /generate ----------------------------------------------------------------------------
    route(
        "/generate/text2img", _generation.text2img, "POST", access="generate",
        body=GenerateBody, answer=QueuedReply, status=202,
    ),
    route(
        "/generate/img2img", _generation.img2img, "POST", access="generate", body=GenerateBody,
        answer=QueuedReply, status=202,
    ),
    route(
        "/generate/inpainting", _generation.inpainting, "POST", access="generate",
        body=GenerateBody, answer=QueuedReply, status=202,
    ),
    route(
        "/generate/controlnet", _generation.controlnet, "POST", access="generate",
        body=GenerateBody, answer=RestError, status=501,
    ),
    route(
        "/generate/upscale", _generation.upscale, "POST", access="generate", body=UpscaleBody,
        answer=QueuedReply, status=202,
    ),
    # -- /queue: a job's sub-paths, then the job, then the fixed paths -------------------------
    route(
        "/queue/job/{job_id}/output/{filename}", outputs_handlers.download, access="public",
        query=_THUMB, media_types=IMAGE_TYPES,
    ),
    route(
        "/queue/job/{job_id}/preview", _queue.get_preview, access="identified",
        media_types=("image/png",),
    ),
    route("/queue/job/{job_id}", _queue.get_job, access="identified", answer=JobReply),
    route(
        "/queue/job/{job_id}", _queue.delete_job, "DELETE", access="jobs:own",
        answer=DeleteReply,
    ),
    route("/queue/status", _queue.queue_status, access="jobs:own", answer=QueueStatus),
    route(
        "/queue/history", _queue.history, access="jobs:own", query=_HISTORY_QUERY,
        answer=HistoryReply,
    ),
    route(
        "/queue/cancel", _queue.cancel, "POST", access="identified", body=CancelBody,
        answer=CancelReply,
    ),
    route(
        "/queue/clear", _queue.clear, "POST", access="jobs:own", body=NO_BODY,
        answer=ClearReply,
    ),
    # The downloads' alias (public too).
    route(
        "/v1/jobs/{job_id}/output/{filename}", outputs_handlers.download, access="public",
        query=_THUMB, media_types=IMAGE_TYPES,
    ),
    # -- /v1: the readme's synchronous API and its names for models and auth ----------------
    route(
        "/v1/generate", v1_handlers.generate, "POST", access="generate", body=V1GenerateBody,
        answer=V1Result,
    ),
    route("/v1/generate/{job_id}", v1_handlers.generation, access="identified", answer=V1Result),
    route(
        "/v1/models", _models.list_models, access="models:read", query=_MODEL_QUERY,
        answer=ModelListing,
    ),
    route(
        "/v1/auth/login", auth_handlers.login, "POST", access="public", body=LoginBody,
        answer=LoginReply,
    ),
    route(
        "/v1/auth/refresh", auth_handlers.refresh, "POST", access="identified", body=NO_BODY,
        answer=TokenRefreshReply,
    ),
    route("/v1/auth/profile", auth_handlers.me, access="identified", answer=MeReply),
    route(
        "/v1/auth/logout", auth_handlers.logout, "POST", access="identified", body=NO_BODY,
        answer=LogoutReply,
    ),
    # -- utilities and image tools: validate and image/download are public ------------------
    route("/samplers", utility_handlers.samplers, access="models:read", answer=SamplersReply),
    route(
        "/schedulers", utility_handlers.schedulers, access="models:read", answer=SchedulersReply
    ),
    route("/parameters", utility_handlers.parameters, access="models:read", answer=ParametersReply),
    route(
        "/validate", utility_handlers.validate, "POST", access="public", body=GenerateBody,
        query=(MODE_QUERY,), answer=ValidationReply,
    ),
    route(
        "/estimate", utility_handlers.estimate, "POST", access="models:read",
        body=GenerateBody, query=(MODE_QUERY,), answer=EstimateReply,
    ),
    route(
        "/image/download", image_handlers.download, access="public", query=DOWNLOAD_QUERY,
        answer=DownloadReply, media_types=(*IMAGE_TYPES, JSON),
    ),
    route(
        "/image/resize", image_handlers.resize, "POST", access="generate", body=ResizeBody,
        answer=ImageReply,
    ),
    route(
        "/image/crop", image_handlers.crop, "POST", access="generate", body=CropBody,
        answer=ImageReply,
    ),
]
"""Every /api route, in match order."""


def create_rest_app(service: SdrestService) -> Starlette:
    """The family's sub-application over the one service."""
    app = Starlette(
        routes=ROUTES,
        # Unexpected exceptions are not listed: RequestIdMiddleware answers them (a handler for
        # Exception would run outside the middleware, without the request id).
        exception_handlers={SdrestError: render_error, 404: render_error, 405: render_error},
        middleware=[Middleware(RequestIdMiddleware)],
    )
    app.state.service = service
    app.state.system = SystemState()
    return app
