"""What ``POST /api/validate`` reports beyond the first error: every broken limit, unknown
sampler and scheduler names, and warnings about what a job would do. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sdrest.api.rest.parameters import SIZE_STEP
from sdrest.api.rest.utility_responses import Issue
from sdrest.schemas import SAMPLE_METHODS, SCHEDULERS, ImgGenRequest
from sdrest.settings import Limits


def limit_issues(values: Mapping[str, int | None], limits: Limits) -> list[Issue]:
    """Every limit a body breaks (not just the first), by spec field name."""
    issues = []
    for name in ("width", "height"):
        value = values.get(name)
        if value is not None and not limits.min_size <= value <= limits.max_size:
            issues.append(
                Issue(name, f"{name} must be between {limits.min_size} and {limits.max_size}")
            )
    steps = values.get("steps")
    if steps is not None and not 1 <= steps <= limits.max_steps:
        issues.append(Issue("steps", f"steps must be between 1 and {limits.max_steps}"))
    batch = values.get("batch_count")
    if batch is not None and not 1 <= batch <= limits.max_batch:
        issues.append(Issue("batch_count", f"batch_count must be between 1 and {limits.max_batch}"))
    return issues


def name_issues(sampler: str | None, scheduler: str | None) -> list[Issue]:
    """Unknown sampler or scheduler names (already in the library's spelling)."""
    issues = []
    for field, value, valid in (
        ("sampling_method", sampler, SAMPLE_METHODS),
        ("scheduler", scheduler, SCHEDULERS),
    ):
        name = (value or "").strip().lower()
        if name not in ("", "default") and name not in valid:
            issues.append(Issue(field, f"unknown {field} {name!r}; valid: {', '.join(valid)}"))
    return issues


def request_warnings(
    request: ImgGenRequest, model: str, loaded: Collection[str], step: int = SIZE_STEP
) -> list[Issue]:
    """Things that are allowed but worth telling before queueing; ``loaded``: the loaded
    models; ``step``: the multiple the model's sizes are rounded up to."""
    warnings = []
    width, height = request.width, request.height
    if width % step or height % step:
        rounded = (-(-width // step) * step, -(-height // step) * step)
        warnings.append(
            Issue(
                "width" if width % step else "height",
                f"{width}x{height} will be generated as {rounded[0]}x{rounded[1]}"
                f" (a multiple of {step})",
                "SIZE_ROUNDED",
            )
        )
    if model not in loaded:
        warnings.append(
            Issue(
                "model_name", f"{model} is not loaded; the job loads it first", "MODEL_NOT_LOADED"
            )
        )
    return warnings
