"""The pure request -> binding keyword mapping."""

from __future__ import annotations

import math

import pytest

from sdrest.engine.base import GenerationPlan, ModelSpec, ResolvedLora
from sdrest.engine.params import generation_kwargs, load_kwargs, parse_cache_option
from sdrest.errors import InvalidRequestError
from sdrest.schemas import (
    GuidanceParams,
    HiresParams,
    ImgGenRequest,
    SampleParams,
    VaeTilingParams,
)
from sdrest.settings import LoadOptions


def _plan(request: ImgGenRequest) -> GenerationPlan:
    return GenerationPlan(model=ModelSpec(name="m", model_path="/m.gguf"), request=request, seed=5)


def test_unset_sampling_fields_stay_unset_for_the_library() -> None:
    kwargs = generation_kwargs(_plan(ImgGenRequest()))
    assert kwargs["sample_method"] == "default" and kwargs["scheduler"] == "default"
    assert math.isinf(kwargs["eta"]) and math.isinf(kwargs["flow_shift"])
    assert kwargs["image_cfg_scale"] is None and kwargs["sigmas"] is None
    assert kwargs["seed"] == 5  # the resolved seed, never the request's -1


def test_every_field_reaches_the_binding() -> None:
    request = ImgGenRequest(
        prompt="p",
        negative_prompt="n",
        clip_skip=2,
        width=96,
        height=80,
        strength=0.3,
        batch_count=2,
        control_strength=0.5,
        sample_params=SampleParams(
            scheduler="Karras",
            sample_method="DPM++2M",
            sample_steps=7,
            eta=0.5,
            shifted_timestep=3,
            custom_sigmas=[1.5, 0.0],
            flow_shift=2.0,
            guidance=GuidanceParams(txt_cfg=4.5, img_cfg=1.5, distilled_guidance=2.0),
        ),
        vae_tiling_params=VaeTilingParams(enabled=True, tile_size_x=32, tile_size_y=48),
        cache_mode="easycache",
        cache_option="reuse_threshold=0.3,max_warmup_steps=2",
        scm_policy_dynamic=False,
    )
    kwargs = generation_kwargs(_plan(request))
    assert (kwargs["scheduler"], kwargs["sample_method"]) == ("karras", "dpm++2m")
    assert (kwargs["sample_steps"], kwargs["eta"], kwargs["flow_shift"]) == (7, 0.5, 2.0)
    assert (kwargs["cfg_scale"], kwargs["image_cfg_scale"], kwargs["guidance"]) == (4.5, 1.5, 2.0)
    assert kwargs["sigmas"] == "1.5,0.0" and kwargs["timestep_shift"] == 3
    assert kwargs["vae_tiling"] is True and kwargs["vae_tile_size"] == "32x48"
    assert kwargs["cache_reuse_threshold"] == 0.3 and kwargs["cache_max_warmup_steps"] == 2
    assert kwargs["scm_policy"] == "static" and kwargs["batch_count"] == 2
    assert (kwargs["width"], kwargs["height"], kwargs["clip_skip"]) == (96, 80, 2)


@pytest.mark.parametrize("option", ["bogus=1", "reuse_threshold", "max_warmup_steps=x"])
def test_bad_cache_options_are_400(option: str) -> None:
    with pytest.raises(InvalidRequestError, match="cache_option"):
        parse_cache_option(option)


def test_load_options_map_onto_the_constructor() -> None:
    spec = ModelSpec(
        name="m",
        diffusion_model_path="/d.gguf",
        vae_path="/v.sft",
        options=LoadOptions(
            threads=3, offload_to_cpu=True, weight_type="q8_0", clip_on_cpu=True, mmap=True
        ),
    )
    kwargs = load_kwargs(spec)
    assert kwargs["diffusion_model_path"] == "/d.gguf" and kwargs["model_path"] == ""
    assert (kwargs["n_threads"], kwargs["offload_params_to_cpu"], kwargs["wtype"]) == (
        3,
        True,
        "q8_0",
    )
    assert kwargs["keep_clip_on_cpu"] and kwargs["enable_mmap"] and kwargs["verbose"] is True
    assert ResolvedLora("/l", 1.0).is_high_noise is False


def test_threads_zero_means_the_engines_default() -> None:
    spec = ModelSpec(name="m", model_path="/m.gguf", options=LoadOptions(threads=0))
    assert load_kwargs(spec, default_threads=4)["n_threads"] == 4  # the physical cores
    assert load_kwargs(spec)["n_threads"] == -1  # no default given: the wrapper's
    explicit = ModelSpec(name="m", model_path="/m.gguf", options=LoadOptions(threads=3))
    assert load_kwargs(explicit, default_threads=4)["n_threads"] == 3


def test_hires_fix_reaches_the_binding_only_when_enabled() -> None:
    assert "hires" not in generation_kwargs(_plan(ImgGenRequest()))
    request = ImgGenRequest(hires=HiresParams(enabled=True, upscaler="lanczos", scale=1.5, steps=2))
    kwargs = generation_kwargs(_plan(request))
    assert kwargs["hires"] is True and kwargs["hires_upscaler"] == "lanczos"
    assert (kwargs["hires_scale"], kwargs["hires_steps"], kwargs["hires_path"]) == (1.5, 2, "")


def test_previews_reach_the_binding_only_when_on() -> None:
    assert "preview_method" not in generation_kwargs(_plan(ImgGenRequest()))
    plan = GenerationPlan(
        model=ModelSpec(name="m", model_path="/m.gguf"),
        request=ImgGenRequest(),
        seed=1,
        preview_method="proj",
        preview_interval=2,
    )
    kwargs = generation_kwargs(plan)
    assert (kwargs["preview_method"], kwargs["preview_interval"]) == ("proj", 2)
