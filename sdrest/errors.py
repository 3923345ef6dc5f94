"""One exception tree for the whole product.

Every domain error carries the HTTP status and a stable machine-readable ``code``; each API family
renders them in its own error shape, so routes never map exceptions by hand.
"""

from __future__ import annotations


class SdrestError(Exception):
    """Base class: a failure the caller can be told about."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequestError(SdrestError):
    """The request is malformed or a value is out of range (400)."""

    status = 400
    code = "invalid_request"


class AuthRequiredError(SdrestError):
    """No valid credentials were presented (401)."""

    status = 401
    code = "auth_required"


class ForbiddenError(SdrestError):
    """The caller may not do this (403)."""

    status = 403
    code = "forbidden"


class NotFoundError(SdrestError):
    """An unknown job, model or file (404)."""

    status = 404
    code = "not_found"


class ConflictError(SdrestError):
    """The resource is in a state that forbids the operation (409)."""

    status = 409
    code = "conflict"


class GoneError(SdrestError):
    """The job existed but its retention time has passed (410)."""

    status = 410
    code = "gone"


class QueueFullError(SdrestError):
    """The bounded job queue has no room (429)."""

    status = 429
    code = "queue_full"


class NotImplementedFeatureError(SdrestError):
    """The loaded model or this build cannot do what was asked (501)."""

    status = 501
    code = "not_implemented"


class EngineError(SdrestError):
    """The native engine failed; the job fails, the server lives on."""

    status = 500
    code = "generation_failed"


class ModelLoadError(EngineError):
    """The native library could not load the model files."""

    code = "model_load_failed"


class EngineCrashedError(EngineError):
    """The worker process running the native library died (a signal or an exit) mid-call."""

    code = "engine_crashed"


class EngineAbortedError(EngineError):
    """The running native call was stopped on request (the worker process was stopped)."""

    code = "cancelled"
