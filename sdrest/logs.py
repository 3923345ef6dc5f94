"""One log format for the whole server: sdrest's own records and uvicorn's alike.

``--log-format text`` writes one readable line per record; ``json`` one JSON object per line with
``time``, ``level``, ``logger`` and ``message``, plus ``request_id`` and ``job_id`` when the record
was made while serving a request or running a job (two context variables: the HTTP middleware
sets :data:`REQUEST_ID`, the job runner :data:`JOB_ID`). The HTTP middleware writes one access
line per request (logger ``sdrest.access``) with the route template, the status and the duration;
uvicorn's own access log is off, so there is one format.

:func:`log_config` is the one place the configuration is built: :func:`configure_logging` applies
it and ``sdrest serve`` hands the same dict to uvicorn (``log_config``), so ``--log-level``
applies to both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import secrets
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from sdrest.errors import InvalidRequestError
from sdrest.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("sdrest_request_id", default=None)
"""The id of the HTTP request being served (``X-Request-ID``), while it is served."""
JOB_ID: ContextVar[str | None] = ContextVar("sdrest_job_id", default=None)
"""The id of the job the runner is executing, while it runs."""

REQUEST_ID_KEY = "sdrest.request_id"
"""ASGI scope key holding the id of the request being served."""

ACCESS_LOGGER = "sdrest.access"

CONTEXT_FIELDS = ("request_id", "job_id")
"""Record attributes taken from the context variables (unless the record names them itself)."""
EXTRA_FIELDS = ("method", "route", "path", "status", "duration_ms", "client")
"""Record attributes an access line carries (``extra=``); JSON lines show them as fields."""
_TEXT_SUFFIX = ("route", "request_id", "job_id")
"""The fields a text line shows after its message, as ``key=value``."""

_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")


def new_request_id() -> str:
    """A fresh, unguessable request id (``req_`` + 16 hex digits)."""
    return f"req_{secrets.token_hex(8)}"


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Log records made inside the block carry ``job_id``."""
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)


class ContextFilter(logging.Filter):
    """Puts the request id and the job id of the current context on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only adds the context fields it lacks."""
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = JOB_ID.get()
        return True


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds (``2025-01-31T12:00:00.123Z``)."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then the context
    and access fields that are known, and ``exception`` with a traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, *EXTRA_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [route=… request_id=… job_id=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line, with the known context fields after the message."""
        line = super().formatMessage(record)
        fields = [
            f"{name}={value}"
            for name in _TEXT_SUFFIX
            if (value := getattr(record, name, None)) is not None
        ]
        return f"{line} [{' '.join(fields)}]" if fields else line


def log_level(name: str) -> int:
    """The numeric level of ``--log-level`` (a name such as ``info``, any case; uvicorn's
    ``trace`` is 5); 400 ``invalid_request`` for anything else."""
    if name.lower() == "trace":
        return 5
    value = logging.getLevelName(name.upper())
    if not isinstance(value, int):
        raise InvalidRequestError(f"unknown log level: {name}")
    return value


def log_config(settings: Settings) -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` configuration of ``settings`` (``log_level``,
    ``log_format``): one handler on stderr at the root, every logger (uvicorn's too) through it."""
    level = log_level(settings.log_level)
    formatter = JsonFormatter if settings.log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"sdrest": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "sdrest",
                "filters": ["context"],
            }
        },
        "loggers": {
            # uvicorn's loggers lose their own handlers and propagate to ours.
            **{
                name: {"handlers": [], "level": level, "propagate": True}
                for name in _UVICORN_LOGGERS
            },
            # Replaced by sdrest.access (one line per request, with the route template).
            "uvicorn.access": {"handlers": [], "level": logging.WARNING, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure_logging(settings: Settings) -> None:
    """Apply :func:`log_config` to this process (Python's warnings included, so nothing is
    written in another format)."""
    logging.config.dictConfig(log_config(settings))
    logging.captureWarnings(True)
