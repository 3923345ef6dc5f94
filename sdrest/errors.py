"""One exception tree for the whole product.

Every domain error carries the HTTP status and a stable machine-readable ``code``; each API family
renders them in its own error shape, so routes never map exceptions by hand.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdrest.schemas import Job


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


class JobNotFoundError(NotFoundError):
    """No job of that id that the caller may see (404): unknown and other users' jobs alike."""

    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job not found: {job_id}", field="job_id")


class ModelNotFoundError(NotFoundError):
    """No model, preset or component of that name, file, path or hash (404)."""

    code = "model_not_found"


class PathNotAllowedError(InvalidRequestError, ValueError):
    """A user-supplied path that would leave its folder (``..``, absolute, escaping symlink)."""


class ConflictError(SdrestError):
    """The resource is in a state that forbids the operation (409)."""

    status = 409
    code = "conflict"


class GoneError(SdrestError):
    """The job existed but its retention time has passed (410)."""

    status = 410
    code = "gone"


class RetryLaterError(SdrestError):
    """The server has no room for this now; the same request may succeed later (503).

    Every family sends ``retry_after`` (whole seconds) as the ``Retry-After`` header."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = max(1, int(retry_after))


class QueueFullError(RetryLaterError):
    """The bounded job queue has no room (429)."""

    status = 429
    code = "queue_full"


class ServerBusyError(RetryLaterError):
    """Too many client images are being decoded at once (429): their pixels would pass the
    decode budget (``--decode-budget-mb``)."""

    status = 429
    code = "server_busy"


class NotImplementedFeatureError(SdrestError):
    """The loaded model or this build cannot do what was asked (501)."""

    status = 501
    code = "not_implemented"


class DownloadError(SdrestError):
    """A model download failed: the hub could not be reached, refused, or sent a bad file (502)."""

    status = 502
    code = "download_failed"


class ChecksumMismatchError(DownloadError):
    """A downloaded file's SHA-256 differs from the one the hub announced (it is deleted)."""

    code = "checksum_mismatch"


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


JOB_FAILURE_STATUS: MappingProxyType[str, int] = MappingProxyType(
    {
        "invalid_request": 400,
        "not_found": 404,
        "model_not_found": 404,
        "cancelled": 409,
        "interrupted": 409,
        "not_implemented": 501,
        "download_failed": 502,
        "checksum_mismatch": 502,
        "server_restarted": 503,
    }
)
"""Why a job ended without images (its ``JobError.code``) -> the status a client that waited
for it sees. Anything else (engine failures, crashes) is a 500; a job someone else stopped is a
conflict; a job a restart swallowed is "unavailable"."""

_JOB_FAILURE_LEADS: MappingProxyType[str, str] = MappingProxyType(
    {
        "model_load_failed": "the model could not be loaded",
        "generation_failed": "image generation failed",
        "cancelled": "the job was cancelled before it ran",
        "interrupted": "the job was stopped while generating",
        "server_restarted": "the server restarted while the job was running",
    }
)


class JobFailedError(SdrestError):
    """A job a synchronous family waited for ended without a result (:data:`JOB_FAILURE_STATUS`).

    ``code`` is the job's own error code, so each family reports why in its own words.
    """

    def __init__(self, job_id: str, code: str, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id
        self.code = code
        self.status = JOB_FAILURE_STATUS.get(code, 500)
        self.reason = reason or message
        """The job's own error message, without the lead (for a family that words it so)."""

    @classmethod
    def from_job(cls, job: Job) -> JobFailedError:
        """The error of a finished job that did not complete."""
        if job.error is None:
            message = f"job {job.id} ended ({job.status}) without a result"
            return cls(job.id, "internal_error", message)
        lead = _JOB_FAILURE_LEADS.get(job.error.code)
        text = job.error.message
        message = f"{lead}: {text}" if lead and text else (lead or text)
        return cls(job.id, job.error.code, message, reason=text)
