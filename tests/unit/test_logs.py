"""The one log format (:mod:`sdrest.logs`): JSON and text lines, the request and job ids from
their context variables, and the configuration ``sdrest serve`` hands to uvicorn."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from sdrest.cli import main
from sdrest.errors import InvalidRequestError
from sdrest.logs import (
    REQUEST_ID,
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    job_context,
    log_config,
    log_level,
)
from sdrest.settings import load_settings


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("sdrest.test", logging.WARNING, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(made, name, value)
    ContextFilter().filter(made)
    return made


def test_a_json_line_has_the_fields_and_the_context() -> None:
    token = REQUEST_ID.set("req_0123")
    try:
        with job_context("job_1_ab"):
            line = JsonFormatter().format(record("hello %s", "world"))
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert entry == {
        "time": entry["time"],
        "level": "WARNING",
        "logger": "sdrest.test",
        "message": "hello world",
        "request_id": "req_0123",
        "job_id": "job_1_ab",
    }
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_outside_a_request_or_job_there_are_no_ids() -> None:
    entry = json.loads(JsonFormatter().format(record()))
    assert "request_id" not in entry and "job_id" not in entry


def test_an_explicit_job_id_wins_over_the_context() -> None:
    with job_context("job_other"):
        entry = json.loads(JsonFormatter().format(record(job_id="job_mine")))
    assert entry["job_id"] == "job_mine"


def test_access_fields_and_exceptions_in_json() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record(route="/api/queue/job/{job_id}", status=404, duration_ms=1.5)
        made.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(made))
    assert (entry["route"], entry["status"], entry["duration_ms"]) == (
        "/api/queue/job/{job_id}",
        404,
        1.5,
    )
    assert "ValueError: boom" in entry["exception"]
    assert "\n" not in JsonFormatter().format(made)  # one line, whatever the traceback


def test_a_text_line_names_the_context_after_the_message() -> None:
    with job_context("job_1_ab"):
        line = TextFormatter().format(record(route="/v1/models"))
    assert line.endswith("WARNING sdrest.test: hello %s [route=/v1/models job_id=job_1_ab]")
    assert TextFormatter().format(record("plain")).endswith("WARNING sdrest.test: plain")


def test_one_configuration_for_ours_and_uvicorns() -> None:
    config = log_config(load_settings({"log_level": "debug", "log_format": "json"}, env={}))
    assert config["root"] == {"handlers": ["stderr"], "level": logging.DEBUG}
    assert config["formatters"]["sdrest"]["()"] is JsonFormatter
    assert not config["disable_existing_loggers"]  # sdrest's module loggers stay on
    for name in ("uvicorn", "uvicorn.error"):
        assert config["loggers"][name] == {
            "handlers": [],
            "level": logging.DEBUG,
            "propagate": True,
        }
    assert not config["loggers"]["uvicorn.access"]["propagate"]  # sdrest.access replaces it
    text = log_config(load_settings({}, env={}))
    assert text["formatters"]["sdrest"]["()"] is TextFormatter
    assert text["root"]["level"] == logging.INFO


def test_log_levels() -> None:
    assert log_level("WARNING") == log_level("warning") == logging.WARNING
    assert log_level("trace") == 5
    with pytest.raises(InvalidRequestError):
        log_level("loud")


def test_the_cli_refuses_an_unknown_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--log-level", "loud", "--models-dir", "/nonexistent"]) == 2
    assert "unknown log level: loud" in capsys.readouterr().err


def test_the_cli_refuses_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["models", "--log-format", "xml"])
    assert "invalid choice" in capsys.readouterr().err
