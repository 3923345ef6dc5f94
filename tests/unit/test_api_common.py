"""The pieces every family shares: THE msgspec error-path reader, request layering, the output
URL and the one status table of a job that ended without a result."""

from __future__ import annotations

import msgspec
import pytest

from sdrest.api.common import compose_request, validation_path
from sdrest.errors import JOB_FAILURE_STATUS, InvalidRequestError, JobFailedError
from sdrest.outputs import output_url
from sdrest.schemas import Job, JobError


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    x: int


class Outer(msgspec.Struct):
    a: Inner
    items: list[Inner] = msgspec.field(default_factory=list)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"a": {"x": "s"}}', "a.x"),  # wrong type, nested
        (b'{"a": {}}', "a.x"),  # missing, nested
        (b"{}", "a"),  # missing at the top
        (b'{"a": {"x": 1, "y": 2}}', "a.y"),  # unknown field
        (b'{"a": {"x": 1}, "items": [{"x": 1}, {"x": "q"}]}', "items[1].x"),  # in a list
        (b"[]", None),  # the whole body
    ],
)
def test_validation_path_reads_msgspec_messages(raw: bytes, path: str | None) -> None:
    # Pinned to msgspec's message format: this is the one place that reads it.
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(raw, type=Outer)
    assert validation_path(caught.value) == path


def test_compose_request_layers_in_order_and_merges_tables() -> None:
    defaults = {"width": 768, "sample_params": {"sample_steps": 30, "scheduler": "karras"}}
    client = {"prompt": "a cat", "sample_params": {"sample_steps": 4}}
    request = compose_request(defaults, {}, client)
    assert request.prompt == "a cat" and request.width == 768
    assert request.sample_params.sample_steps == 4  # the later layer wins...
    assert request.sample_params.scheduler == "karras"  # ...key by key inside a table
    assert compose_request(client, defaults).sample_params.sample_steps == 30
    with pytest.raises(InvalidRequestError) as caught:
        compose_request({"sample_params": {"sample_steps": "many"}})
    assert caught.value.field == "sample_params.sample_steps"


def test_output_url_is_quoted_relative_or_absolute() -> None:
    assert output_url("job_1_ab", "0.png") == "/api/queue/job/job_1_ab/output/0.png"
    assert output_url("job_1_ab", "0.png", thumb=True).endswith("/0.png?thumb=true")
    assert output_url("j b", "0.png", base_url="http://h:1/") == (
        "http://h:1/api/queue/job/j%20b/output/0.png"
    )


def _ended(status: str, error: JobError | None) -> Job:
    return Job(id="job_1_ab", kind="img_gen", created=0.0, status=status, error=error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_request", 400),
        ("model_not_found", 404),
        ("cancelled", 409),
        ("interrupted", 409),
        ("not_implemented", 501),
        ("server_restarted", 503),
        ("generation_failed", 500),
        ("engine_crashed", 500),
    ],
)
def test_one_status_table_for_jobs_that_ended_without_a_result(code: str, status: int) -> None:
    error = JobFailedError.from_job(_ended("failed", JobError(code, "why")))
    assert (error.status, error.code, error.job_id) == (status, code, "job_1_ab")
    assert error.message.endswith("why")
    assert JOB_FAILURE_STATUS.get(code, 500) == status


def test_a_job_failed_error_names_the_lead_and_handles_no_error() -> None:
    stopped = JobFailedError.from_job(_ended("cancelled", JobError("interrupted", "by user")))
    assert stopped.message == "the job was stopped while generating: by user"
    bare = JobFailedError.from_job(_ended("failed", None))
    assert (bare.status, bare.code) == (500, "internal_error")
