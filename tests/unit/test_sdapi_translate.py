"""Pure /sdapi/v1 translations: A1111 bodies -> canonical request, jobs -> A1111 responses."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import msgspec
import pytest
from PIL import Image

from sdrest.api.sdapi import imageprep, state, translate
from sdrest.api.sdapi.errors import ValidationFailed, decode_body
from sdrest.api.sdapi.prompt_loras import extract_prompt_loras
from sdrest.api.sdapi.schemas import IMG2IMG_DECODER, TXT2IMG_DECODER, Img2ImgBody, Txt2ImgBody
from sdrest.errors import InvalidRequestError, NotFoundError
from sdrest.schemas import ImageRef, ImgGenRequest, Job, JobResult, Progress, RequestLayer
from sdrest.settings import Limits, load_settings


def _no_defaults(model: str | None) -> RequestLayer:
    return {}


def _checkpoint(title: str) -> str:
    if title.startswith("tiny"):
        return "tiny"
    raise NotFoundError(f"unknown checkpoint {title!r}")


CTX = translate.Context(defaults_for=_no_defaults, resolve_checkpoint=_checkpoint)


def txt(body: dict[str, Any], ctx: translate.Context = CTX) -> ImgGenRequest:
    decoded = decode_body(json.dumps(body).encode(), TXT2IMG_DECODER)
    return translate.to_request(decoded, ctx)


def img(body: dict[str, Any], ctx: translate.Context = CTX) -> ImgGenRequest:
    decoded = decode_body(json.dumps(body).encode(), IMG2IMG_DECODER)
    return translate.to_request(decoded, ctx)


def png(size: tuple[int, int], color: Any = (200, 10, 10), mode: str = "RGB") -> str:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def open_b64(value: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(value.split(",")[-1])))


# -- decoding ----------------------------------------------------------------------------------


def test_a1111_fields_map_onto_the_canonical_request() -> None:
    request = txt(
        {
            "prompt": "a cat",
            "negative_prompt": "blurry",
            "seed": 42,
            "steps": 7,
            "cfg_scale": 4.5,
            "distilled_cfg_scale": 2.5,
            "width": 320,
            "height": 256,
            "sampler_name": "DPM++ 2M",
            "scheduler": "Karras",
            "batch_size": 2,
            "n_iter": 3,
        }
    )
    assert request.prompt == "a cat" and request.negative_prompt == "blurry"
    assert (request.seed, request.width, request.height) == (42, 320, 256)
    assert request.batch_count == 6  # batch_size * n_iter
    sample = request.sample_params
    assert (sample.sample_steps, sample.sample_method, sample.scheduler) == (7, "dpm++2m", "karras")
    assert sample.guidance.txt_cfg == 4.5 and sample.guidance.distilled_guidance == 2.5
    assert request.model is None


def test_everything_webuiapi_sends_is_accepted() -> None:
    body = {
        "enable_hr": False, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
        "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": None, "hr_sampler_name": None,
        "hr_scheduler": None, "hr_prompt": "", "hr_negative_prompt": "",
        "denoising_strength": 0.7, "firstphase_width": 0, "firstphase_height": 0,
        "prompt": "x", "styles": [], "seed": -1, "subseed": -1, "subseed_strength": 0.0,
        "seed_resize_from_h": 0, "seed_resize_from_w": 0, "batch_size": 1, "n_iter": 1,
        "steps": 1, "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": False,
        "tiling": False, "do_not_save_samples": False, "do_not_save_grid": False,
        "negative_prompt": "", "eta": 1.0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1,
        "override_settings": {"some_option": [1, 2]}, "override_settings_restore_afterwards": True,
        "sampler_name": "Euler", "scheduler": "automatic", "sampler_index": "Euler a",
        "script_name": None, "script_args": [], "send_images": True, "save_images": False,
        "alwayson_scripts": {"ControlNet": {"args": []}}, "comments": {}, "refiner_switch_at": 0.8,
    }  # fmt: skip
    request = txt(body)
    assert request.sample_params.sample_method == "euler"  # sampler_name wins over sampler_index
    assert request.sample_params.scheduler is None  # automatic = the model's default
    assert request.seed == -1 and request.batch_count == 1
    assert request.strength == 0.75  # txt2img ignores denoising_strength without hires


def test_sampler_index_when_no_sampler_name() -> None:
    assert txt({"sampler_index": "Heun"}).sample_params.sample_method == "heun"


def test_left_out_fields_take_preset_defaults() -> None:
    defaults: RequestLayer = {
        "width": 1024,
        "sample_params": {"sample_steps": 4, "guidance": {"txt_cfg": 1.0}},
    }
    ctx = translate.Context(defaults_for=lambda m: defaults, resolve_checkpoint=_checkpoint)
    request = txt({"prompt": "x", "height": 512, "steps": None}, ctx)
    assert (request.width, request.height) == (1024, 512)
    assert request.sample_params.sample_steps == 4  # null = left out
    assert request.sample_params.guidance.txt_cfg == 1.0
    sent = txt({"prompt": "x", "steps": 9, "cfg_scale": 3}, ctx)
    assert sent.sample_params.sample_steps == 9 and sent.sample_params.guidance.txt_cfg == 3.0


def test_lax_numbers_like_pydantic() -> None:
    request = txt({"steps": "3", "width": 64.0, "seed": "5"})
    assert (request.sample_params.sample_steps, request.width, request.seed) == (3, 64, 5)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"steps": "many"}, ["body", "steps"]),
        ({"width": [1]}, ["body", "width"]),
        ({"cfg_scale": {}}, ["body", "cfg_scale"]),
        ({"batch_size": 0}, ["body", "batch_size"]),
        ({"n_iter": -1}, ["body", "n_iter"]),
        ({"prompt": 5}, ["body", "prompt"]),
        ({"override_settings": {"CLIP_stop_at_last_layers": "x"}},
         ["body", "override_settings", "CLIP_stop_at_last_layers"]),
        ({"lora": [{"path": 3}]}, ["body", "lora", 0, "path"]),
        ({"lora": [{"path": "a", "bogus": 1}]}, ["body", "lora", 0]),
        ({"enable_hr": "perhaps"}, ["body", "enable_hr"]),
    ],
)  # fmt: skip
def test_wrong_types_are_validation_errors(body: dict[str, Any], loc: list[Any]) -> None:
    with pytest.raises(ValidationFailed) as err:
        decode_body(json.dumps(body).encode(), TXT2IMG_DECODER)
    assert err.value.status == 422 and err.value.loc == loc


@pytest.mark.parametrize("raw", [b"", b"  ", b"{", b"[1, 2]", b"null", b"\xff"])
def test_malformed_bodies(raw: bytes) -> None:
    with pytest.raises(ValidationFailed) as err:
        decode_body(raw, TXT2IMG_DECODER)
    assert err.value.status == 422 and err.value.loc == ["body"]


def test_mask_invert_accepts_int_or_bool() -> None:
    for value in (1, True, 0, False):
        body = decode_body(json.dumps({"inpainting_mask_invert": value}).encode(), IMG2IMG_DECODER)
        assert bool(body.inpainting_mask_invert) is bool(value)


def test_unknown_sampler_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="no equivalent") as err:
        txt({"sampler_name": "DPM++ SDE"})
    assert err.value.status == 400


def test_enable_hr_maps_onto_the_native_hires_fix() -> None:
    request = txt(
        {
            "enable_hr": True,
            "hr_scale": 1.5,
            "hr_second_pass_steps": 3,
            "denoising_strength": 0.4,
            "hr_upscaler": "Latent (bicubic)",
        }
    )
    hires = request.hires
    assert hires.enabled and hires.upscaler == "latent_bicubic"
    assert (hires.scale, hires.steps, hires.denoising_strength) == (1.5, 3, 0.4)
    assert request.strength == 0.75  # the first pass is txt2img: no strength


def test_hires_size_and_esrgan_upscaler() -> None:
    request = txt({"enable_hr": True, "hr_resize_x": 1024, "hr_upscaler": "4x-Ultra"})
    assert request.hires.width == 1024 and request.hires.height == 0
    assert request.hires.upscaler == "model" and request.hires.upscaler_model == "4x-Ultra"
    assert request.hires.target_size(512, 768) == (1024, 1536)


def test_hires_is_off_unless_enabled() -> None:
    assert not txt({"enable_hr": False, "hr_scale": 2}).hires.enabled


def test_hires_second_pass_cannot_change_model_or_sampler() -> None:
    with pytest.raises(InvalidRequestError) as err:
        txt({"enable_hr": True, "hr_sampler_name": "Euler a"})
    assert err.value.field == "hr_sampler_name"
    assert txt({"enable_hr": True, "hr_checkpoint_name": "Use same checkpoint"}).hires.enabled


def test_out_of_range_after_translation_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as err:
        txt({"clip_skip": 13})
    assert err.value.status in (400, 422)


# -- options, models, clip skip ----------------------------------------------------------------


def test_checkpoint_override_selects_the_model() -> None:
    body = {"override_settings": {"sd_model_checkpoint": "tiny.safetensors [0123456789]"}}
    assert txt(body).model == "tiny"
    with pytest.raises(NotFoundError):
        txt({"override_settings": {"sd_model_checkpoint": "nope [abc]"}})


def test_clip_skip_precedence() -> None:
    ctx = translate.Context(
        defaults_for=_no_defaults,
        resolve_checkpoint=_checkpoint,
        options={"CLIP_stop_at_last_layers": 3},
    )
    assert txt({}, CTX).clip_skip == -1
    assert txt({}, ctx).clip_skip == 3
    assert txt({"override_settings": {"CLIP_stop_at_last_layers": 2}}, ctx).clip_skip == 2
    body = {"clip_skip": 4, "override_settings": {"CLIP_stop_at_last_layers": 2}}
    assert txt(body, ctx).clip_skip == 4


def test_samples_format() -> None:
    assert txt({}).output_format == "png"
    assert txt({"override_settings": {"samples_format": "jpg"}}).output_format == "jpeg"
    ctx = translate.Context(
        defaults_for=_no_defaults,
        resolve_checkpoint=_checkpoint,
        options={"samples_format": "webp"},
    )
    assert txt({}, ctx).output_format == "webp"
    with pytest.raises(InvalidRequestError, match="samples_format"):
        txt({"override_settings": {"samples_format": "gif"}})


# -- prompt extensions -------------------------------------------------------------------------


def test_extra_args_win_over_a1111_fields() -> None:
    prompt = 'a cat <sd_cpp_extra_args>{"sample_params": {"sample_steps": 3}, "seed": 9}'
    request = txt({"prompt": prompt + "</sd_cpp_extra_args>", "steps": 20, "seed": 1})
    assert request.prompt == "a cat"
    assert request.sample_params.sample_steps == 3 and request.seed == 9


def test_bad_extra_args_are_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="sd_cpp_extra_args"):
        txt({"prompt": 'x <sd_cpp_extra_args>{"bogus": 1}</sd_cpp_extra_args>'})


def test_lora_tags_stay_text_when_off() -> None:
    request = txt({"prompt": "a cat <lora:style:0.5>"})
    assert request.prompt == "a cat <lora:style:0.5>" and request.lora == []


def test_lora_tags_when_on() -> None:
    ctx = translate.Context(
        defaults_for=_no_defaults, resolve_checkpoint=_checkpoint, prompt_lora_names={"style"}
    )
    request = txt(
        {"prompt": "a cat <lora:style:0.5>, <LORA:style>", "lora": [{"path": "other"}]}, ctx
    )
    assert request.prompt == "a cat ,"
    assert [(lora.path, lora.multiplier) for lora in request.lora] == [
        ("other", 1.0),
        ("style", 0.5),
        ("style", 1.0),
    ]
    with pytest.raises(NotFoundError, match="unknown LoRA 'nope'"):
        txt({"prompt": "<lora:nope:1>"}, ctx)
    with pytest.raises(InvalidRequestError, match="must be a number"):
        txt({"prompt": "<lora:style:lots>"}, ctx)


def test_lora_tags_never_take_paths() -> None:
    with pytest.raises(NotFoundError):
        extract_prompt_loras("<lora:../../etc/passwd:1>", {"style"})


def test_structured_lora_and_extra_images() -> None:
    image = png((8, 8))
    request = txt(
        {"lora": [{"path": "style", "multiplier": 0.3, "is_high_noise": True}],
         "extra_images": [image]}
    )  # fmt: skip
    assert request.lora[0].path == "style" and request.lora[0].is_high_noise
    assert request.ref_images == [image]


# -- img2img -----------------------------------------------------------------------------------


def test_img2img_fields() -> None:
    init = png((64, 64))
    request = img({"init_images": [init], "denoising_strength": 0.4, "width": 64, "height": 64})
    assert request.init_image == init  # already the right size: passed through untouched
    assert request.strength == 0.4


def test_img2img_needs_exactly_one_image() -> None:
    with pytest.raises(InvalidRequestError, match="init_images"):
        img({"prompt": "x"})
    with pytest.raises(InvalidRequestError, match="only one"):
        img({"init_images": [png((8, 8)), png((8, 8))]})


def test_img2img_resizes_to_the_target() -> None:
    request = img({"init_images": [png((32, 16))], "width": 64, "height": 64, "resize_mode": 1})
    assert request.init_image is not None
    assert open_b64(request.init_image).size == (64, 64)


def test_img2img_bad_image_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="init_images"):
        img({"init_images": ["bm90IGFuIGltYWdl"], "width": 64, "height": 64})


def test_mask_invert_and_blur() -> None:
    mask = png((64, 64), 255, "L")
    request = img(
        {"init_images": [png((64, 64))], "mask": mask, "width": 64, "height": 64,
         "inpainting_mask_invert": 1, "mask_blur": 0}
    )  # fmt: skip
    assert request.mask_image is not None
    assert open_b64(request.mask_image).getextrema() == (0, 0)  # white inverted to black
    same = img(
        {"init_images": [png((64, 64))], "mask": mask, "width": 64, "height": 64,
         "mask_blur": 0}
    )  # fmt: skip
    assert same.mask_image == mask


def test_resize_modes() -> None:
    source = Image.new("RGB", (40, 20), (255, 0, 0))
    for mode in range(4):
        assert imageprep.resize(source, 30, 30, mode).size == (30, 30)
    filled = imageprep.resize(source, 40, 40, imageprep.RESIZE_AND_FILL)
    assert filled.getpixel((20, 0)) == (255, 0, 0)  # the border is filled, not black
    assert imageprep.resize(source, 40, 20, 0) is source


# -- responses ---------------------------------------------------------------------------------


def _job(status: str = "completed") -> Job:
    request = ImgGenRequest(prompt="a cat", seed=10, batch_count=4, width=64, height=64)
    refs = [ImageRef(i, f"{i}.png", 64, 64, 10 + i) for i in range(4)]
    return Job(
        id="job_1_ab",
        kind="img_gen",
        status=status,  # type: ignore[arg-type]
        created=1700000000.0,
        started=1700000001.0,
        model="tiny",
        request=msgspec.structs.replace(
            request,
            sample_params=msgspec.structs.replace(
                request.sample_params, sample_method="euler_a", scheduler="karras"
            ),
        ),
        result=JobResult("png", refs, ["info"] * 4) if status == "completed" else None,
    )


def test_generation_response() -> None:
    extra = translate.ResultInfo(
        parameters={"prompt": "a cat"}, images=["AAAA"], model_hash="0123456789",
        batch_size=2, n_iter=2,
    )  # fmt: skip
    body = msgspec.to_builtins(translate.generation_response(_job(), extra))
    assert body["images"] == ["AAAA"] and body["parameters"] == {"prompt": "a cat"}
    info = json.loads(body["info"])
    assert info["all_seeds"] == [10, 11, 12, 13] and info["seed"] == 10
    assert info["sampler_name"] == "Euler a" and info["scheduler"] == "karras"
    assert (info["batch_size"], info["n_iter"]) == (2, 2)
    assert info["sd_model_name"] == "tiny" and info["sd_model_hash"] == "0123456789"
    assert info["index_of_first_image"] == 0 and len(info["infotexts"]) == 4
    assert len(info["job_timestamp"]) == 14 and info["interrupted"] is False
    assert info["all_prompts"] == ["a cat"] * 4


def test_interrupted_response() -> None:
    extra = translate.ResultInfo(parameters={}, images=[])
    info = json.loads(translate.generation_response(_job("cancelled"), extra).info)
    assert info["interrupted"] is True and info["all_seeds"] == []


def test_echo_leaves_images_out() -> None:
    raw = {"prompt": "x", "init_images": ["big"], "mask": "big", "steps": 1}
    assert translate.echo_parameters(raw, False) == {
        "prompt": "x", "init_images": None, "mask": None, "steps": 1
    }  # fmt: skip
    assert translate.echo_parameters(raw, True) == raw


# -- progress, options, flags ------------------------------------------------------------------


def test_progress_idle() -> None:
    view = msgspec.to_builtins(
        state.progress_view(None, queued=0, visible=True, stop_requested=False)
    )
    assert view["progress"] == 0.0 and view["current_image"] is None
    assert view["state"]["job_count"] == 0 and view["state"]["job"] == ""


def test_progress_running() -> None:
    job = _job("generating")
    job.progress = Progress("sampling", 5, 20, 0.5)
    view = msgspec.to_builtins(
        state.progress_view(job, queued=2, visible=True, stop_requested=True, now=1700000010.0)
    )
    assert view["progress"] == 0.25 and view["eta_relative"] == 7.5
    assert view["state"]["sampling_step"] == 5 and view["state"]["sampling_steps"] == 20
    assert view["state"]["job"] == "job_1_ab" and view["state"]["job_count"] == 3
    assert view["state"]["interrupted"] is True
    assert view["textinfo"] == "Sampling step 5/20"
    hidden = msgspec.to_builtins(
        state.progress_view(job, queued=0, visible=False, stop_requested=False)
    )
    assert hidden["state"]["job"] == ""


def test_progress_while_loading_shows_no_steps() -> None:
    job = _job("generating")
    job.progress = Progress("loading", 120, 300)  # tensors loaded, not sampling steps
    view = msgspec.to_builtins(
        state.progress_view(job, queued=0, visible=True, stop_requested=False)
    )
    assert view["progress"] == 0.0 and view["state"]["sampling_steps"] == 0
    assert view["textinfo"] == "Loading"


def test_options_and_flags() -> None:
    settings = load_settings({"jwt_secret": "hunter2", "port": 9000}, env={})
    view = state.options_view(
        {"samples_format": "webp", "sd_model_checkpoint": "stale"},
        checkpoint="tiny.safetensors [0123456789]",
        checkpoint_hash=None,
        settings=settings,
    )
    assert view["sd_model_checkpoint"] == "tiny.safetensors [0123456789]"
    assert view["samples_format"] == "webp" and view["CLIP_stop_at_last_layers"] == 1
    flags = state.cmd_flags(settings)
    assert flags["port"] == 9000 and flags["api"] is True
    assert "jwt_secret" not in flags and "hunter2" not in json.dumps(flags)
    assert flags["max_queue"] == settings.limits.max_queue


def test_options_store_is_bounded() -> None:
    store = state.OptionsStore()
    store.update({"a": 1})
    assert store.values == {"a": 1}
    with pytest.raises(InvalidRequestError):
        store.update({str(i): i for i in range(state.MAX_OPTION_KEYS + 1)})
    assert store.values == {"a": 1}


def test_body_types_are_distinct() -> None:
    assert issubclass(Img2ImgBody, Txt2ImgBody)
    assert Limits().max_image_bytes > 0
