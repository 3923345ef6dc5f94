"""Pure functions behind the /api utilities: tables, parameter ranges, validation, estimates."""

from __future__ import annotations

import msgspec
import pytest

from sdrest.api.rest.estimate import (
    HEURISTIC_SECONDS_PER_STEP_PER_MEGAPIXEL,
    estimate_memory,
    estimate_time,
    samples_from_jobs,
)
from sdrest.api.rest.parameters import (
    SAMPLER_INFO,
    SCHEDULER_INFO,
    native_size_layer,
    parameters_view,
    sampler_aliases,
    samplers_view,
    schedulers_view,
    size_step,
)
from sdrest.api.rest.utility_responses import Issue, ValidationReply
from sdrest.api.rest.validation import limit_issues, name_issues, request_warnings
from sdrest.schemas import (
    SAMPLE_METHODS,
    SCHEDULERS,
    ImageRef,
    ImgGenRequest,
    Job,
    JobResult,
    Progress,
    SampleParams,
    VaeTilingParams,
)
from sdrest.settings import Limits


def test_every_library_sampler_and_scheduler_is_described() -> None:
    assert set(SAMPLER_INFO) == set(SAMPLE_METHODS)
    assert set(SCHEDULER_INFO) == set(SCHEDULERS)
    assert samplers_view().samplers == [m.replace("dpm++", "dpmpp") for m in SAMPLE_METHODS]
    assert schedulers_view().schedulers == list(SCHEDULERS)


def test_sampler_aliases_are_the_library_spellings() -> None:
    assert sampler_aliases("dpmpp2s_a") == ["dpm++2s_a"]
    assert sampler_aliases("euler") == []


def test_native_sizes_and_steps_by_architecture() -> None:
    assert native_size_layer("sd1") == {"width": 512, "height": 512}
    assert native_size_layer("sd2") == {"width": 768, "height": 768}
    for architecture in ("sdxl", "sd3", "flux", "flux2", "qwen_image", "z_image"):
        assert native_size_layer(architecture) == {"width": 1024, "height": 1024}
    assert native_size_layer("wan") == {} and native_size_layer(None) == {}
    assert (size_step("sd1"), size_step("sdxl"), size_step("flux")) == (8, 8, 16)
    params = msgspec.to_builtins(parameters_view(Limits(), "sd15", {"width": 512}, "sd1"))
    assert params["parameters"]["width"]["step"] == 8


def test_parameters_narrow_schema_bounds_by_limits_and_take_preset_defaults() -> None:
    limits = Limits(min_size=128, max_size=1024, max_steps=40, max_batch=2)
    defaults = {"width": 1024, "sample_params": {"sample_steps": 4, "sample_method": "euler"}}
    params = msgspec.to_builtins(parameters_view(limits, "flux", defaults))["parameters"]
    assert (params["width"]["min"], params["width"]["max"], params["width"]["default"]) == (
        128,
        1024,
        1024,
    )
    assert params["height"]["default"] == 512  # the schema default: the preset sets none
    assert (params["steps"]["min"], params["steps"]["max"], params["steps"]["default"]) == (
        1,
        40,
        4,
    )
    assert params["batch_count"]["max"] == 2
    assert params["sampling_method"]["default"] == "euler"
    assert params["scheduler"]["default"] is None
    # Schema bounds (msgspec Meta) come through untouched where no limit applies.
    assert (params["strength"]["min"], params["strength"]["max"]) == (0.0, 1.0)
    assert (params["clip_skip"]["min"], params["clip_skip"]["max"]) == (-1, 12)
    assert params["clip_skip"]["type"] == "integer"
    assert params["cfg_scale"]["type"] == "number"


def test_limit_issues_lists_each_broken_limit() -> None:
    limits = Limits(max_size=1024, max_steps=50, max_batch=4)
    issues = limit_issues({"width": 63, "height": 1025, "steps": 0, "batch_count": 5}, limits)
    assert [i.field for i in issues] == ["width", "height", "steps", "batch_count"]
    assert limit_issues({"width": 64, "height": None}, limits) == []


def test_name_issues() -> None:
    assert name_issues("dpm++2m", "Karras") == []
    assert name_issues(None, "default") == []
    issues = name_issues("warp", "nope")
    assert [i.field for i in issues] == ["sampling_method", "scheduler"]
    assert "unknown sampling_method 'warp'" in issues[0].message


def test_warnings_for_rounding_and_loading() -> None:
    request = ImgGenRequest(width=100, height=64)
    warnings = request_warnings(request, "tiny", loaded=("tiny",))
    assert [(w.field, w.code) for w in warnings] == [("width", "SIZE_ROUNDED")]
    assert "will be generated as 112x64" in warnings[0].message
    assert request_warnings(ImgGenRequest(width=64, height=64), "a", ("a",)) == []
    assert request_warnings(ImgGenRequest(width=72, height=64), "sd15", ("sd15",), step=8) == []
    assert request_warnings(ImgGenRequest(), "a", ())[0].code == "MODEL_NOT_LOADED"


def test_validation_view_dedupes_errors() -> None:
    issue = Issue("width", "too wide")
    view = msgspec.to_builtins(ValidationReply.of([issue, issue, Issue("height", "x")], [], "m"))
    assert view["valid"] is False
    assert [e["field"] for e in view["errors"]] == ["width", "height"]
    assert ValidationReply.of([], [], "m").valid is True


def job(
    *,
    model: str = "tiny",
    status: str = "completed",
    size: tuple[int, int] = (64, 64),
    spp: float = 0.5,
    steps: int = 10,
    images: int = 1,
    sampler: str | None = None,
    wall: float = 7.0,
) -> Job:
    refs = [ImageRef(i, f"{i}.png", size[0], size[1], 1) for i in range(images)]
    return Job(
        id="j",
        kind="img_gen",
        status=status,  # type: ignore[arg-type]
        created=0.0,
        started=100.0,
        completed=100.0 + wall,
        model=model,
        request=ImgGenRequest(sample_params=SampleParams(sample_method=sampler))
        if sampler
        else None,
        result=JobResult("png", refs),
        progress=Progress("done", steps, steps, spp),
    )


def test_samples_come_only_from_completed_measured_jobs_of_the_model() -> None:
    jobs = [
        job(),
        job(model="other"),
        job(status="failed"),
        job(spp=0.0),
        job(sampler="heun", spp=1.0),
    ]
    samples = samples_from_jobs(jobs, "tiny")
    assert [s.seconds_per_call for s in samples] == [0.5, 0.5]  # heun: two calls a step
    assert samples[0].pixels == 64 * 64
    assert samples[0].overhead == pytest.approx(2.0)  # 7 s wall - 10 steps x 0.5 s


def test_measured_time_scales_with_pixels_steps_batch_and_sampler() -> None:
    samples = samples_from_jobs([job(size=(64, 64), spp=0.5, wall=5.0)], "tiny")
    request = ImgGenRequest(
        width=128,
        height=64,
        batch_count=3,
        sample_params=SampleParams(sample_steps=4, sample_method="dpm2"),
    )
    estimate = msgspec.to_builtins(estimate_time(request, samples))
    assert estimate["basis"] == "measured"
    assert estimate["seconds_per_step"] == pytest.approx(2.0)  # 0.5 x 2 (pixels) x 2 (calls)
    assert estimate["seconds"] == pytest.approx(2.0 * 4 * 3 + 0.0)


def test_heuristic_time_is_flagged() -> None:
    estimate = msgspec.to_builtins(estimate_time(ImgGenRequest(width=1000, height=1000), []))
    assert estimate["basis"] == "heuristic"
    assert estimate["seconds_per_step"] == pytest.approx(HEURISTIC_SECONDS_PER_STEP_PER_MEGAPIXEL)


def test_memory_counts_weights_latents_and_vae() -> None:
    request = ImgGenRequest(width=512, height=256, batch_count=2)
    memory = msgspec.to_builtins(
        estimate_memory(request, {"model": 1000, "vae": 24}, vae_tiling=False)
    )
    assert memory["weights_bytes"] == 1024
    assert memory["latent_bytes"] == 16 * 4 * 64 * 32 * 2
    assert memory["vae_decode_bytes"] == 128 * 4 * 512 * 256 * 2
    assert memory["bytes"] == 1024 + memory["latent_bytes"] + memory["vae_decode_bytes"]
    tiled = msgspec.to_builtins(
        estimate_memory(
            ImgGenRequest(width=2048, height=2048, vae_tiling_params=VaeTilingParams(enabled=True)),
            {},
            vae_tiling=False,
        )
    )
    assert tiled["vae_tiling"] is True
    assert tiled["vae_decode_bytes"] == 128 * 4 * 256 * 256 * 2
