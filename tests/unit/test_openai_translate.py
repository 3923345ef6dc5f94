"""Pure translations of the OpenAI images family, both directions, and its error mapping."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import msgspec
import pytest
from PIL import Image

from sdrest.api.openai import errors, translate
from sdrest.api.openai.edits import edit_to_request, library_mask
from sdrest.api.openai.forms import parse_fields
from sdrest.api.openai.responses import ImagesResponse, ModelList
from sdrest.api.openai.schemas import EditFields
from sdrest.errors import InvalidRequestError, JobFailedError, ModelNotFoundError, NotFoundError
from sdrest.models import ModelEntry, ModelPreset, UnknownModelError
from sdrest.schemas import ImageRef, Job, JobError, JobResult, RequestLayer
from sdrest.settings import Limits

KNOWN = ["tiny", "klein-preset"]


def no_defaults(model: str | None) -> RequestLayer:
    return {}


class FakeModels:
    """What the translation asks of ``service.models``: presets named ``names``."""

    def __init__(self, defaults: Any = no_defaults, names: list[str] = KNOWN) -> None:
        self.defaults, self.names = defaults, names

    def find(self, identifier: str, type: str | None = None) -> ModelPreset:
        if identifier not in self.names:
            raise UnknownModelError(f"unknown model {identifier!r}")
        return ModelPreset(name=identifier)

    def generation_models(self) -> list[ModelEntry | ModelPreset]:
        return [ModelPreset(name=name) for name in self.names]

    def main_entry(self, name: str) -> ModelEntry:
        raise UnknownModelError(f"unknown model {name!r}")

    def default(self) -> str:
        raise InvalidRequestError("no default model")

    def defaults_for(self, model: str | None) -> RequestLayer:
        result: RequestLayer = self.defaults(model)
        return result


def gen(body: dict[str, Any], defaults: Any = no_defaults) -> translate.ImagesJob:
    return translate.generation_to_request(json.dumps(body).encode(), FakeModels(defaults))


def wire(value: Any) -> bytes:
    """The JSON bytes of a Struct or a dict (key order included)."""
    if isinstance(value, msgspec.Struct):
        return msgspec.json.encode(value)
    return json.dumps(value, separators=(",", ":")).encode()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


# -- size, formats, models ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [("512x768", (512, 768)), ("64X64", (64, 64)), (" 96 x 128 ", (96, 128)), ("auto", None)],
)
def test_parse_size(size: str, expected: tuple[int, int] | None) -> None:
    assert translate.parse_size(size) == expected


@pytest.mark.parametrize("size", ["big", "512x", "x512", "-1x64", "1.5x2", "512*512"])
def test_bad_size_is_a_400_on_size(size: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate.parse_size(size)
    assert info.value.field == "size"


def test_output_format_aliases_and_refusal() -> None:
    assert translate.output_format("JPG") == "jpeg"
    assert translate.output_format("webp") == "webp"
    with pytest.raises(InvalidRequestError):
        translate.output_format("gif")


def name_of(model: ModelEntry | ModelPreset | None) -> str | None:
    return None if model is None else model.name


def test_resolve_model() -> None:
    models = FakeModels()
    assert name_of(translate.resolve_model("tiny", models)) == "tiny"
    assert translate.resolve_model(None, models) is None
    assert translate.resolve_model("dall-e-3", models) is None  # stock clients: the default model
    real = FakeModels(names=["dall-e-3"])
    assert name_of(translate.resolve_model("dall-e-3", real)) == "dall-e-3"  # a real one wins
    with pytest.raises(NotFoundError) as info:
        translate.resolve_model("nope", models)
    assert info.value.field == "model" and "klein-preset, tiny" in info.value.message
    assert info.value.code == "model_not_found"


# -- generations -------------------------------------------------------------------------------


def test_generation_maps_openai_and_extension_fields() -> None:
    out = gen(
        {
            "prompt": "a cat",
            "model": "tiny",
            "n": 3,
            "size": "64x96",
            "output_format": "jpeg",
            "output_compression": 150,
            "negative_prompt": "dogs",
            "steps": 2,
            "seed": 7,
            "cfg_scale": 1.5,
            "sampler": "Euler_A",
            "scheduler": "Karras",
            "quality": "hd",
            "style": "vivid",
            "user": "u1",
            "background": "auto",
            "moderation": "low",
        }
    )
    req = out.request
    assert (req.prompt, req.negative_prompt, req.model) == ("a cat", "dogs", "tiny")
    assert (req.batch_count, req.width, req.height, req.seed) == (3, 64, 96, 7)
    assert (req.output_format, req.output_compression) == ("jpeg", 100)
    sample = req.sample_params
    assert (sample.sample_steps, sample.sample_method, sample.scheduler) == (2, "euler_a", "karras")
    assert sample.guidance.txt_cfg == 1.5
    assert out.response_format == "b64_json" and out.revised_prompt is None


def test_defaults_are_the_request_defaults_when_nothing_is_said() -> None:
    req = gen({"prompt": "x", "size": "auto", "output_compression": -4}).request
    assert (req.width, req.height, req.batch_count, req.seed) == (512, 512, 1, -1)
    assert req.model is None and req.output_compression == 0


def test_precedence_preset_then_extra_args_then_top_level() -> None:
    def defaults(model: str | None) -> RequestLayer:
        assert model == "klein-preset"
        return {
            "width": 256,
            "height": 256,
            "sample_params": {"sample_steps": 4, "guidance": {"txt_cfg": 1.0}},
        }

    extra = {"width": 320, "sample_params": {"sample_steps": 8, "eta": 0.5}}
    prompt = f"a cat <sd_cpp_extra_args>{json.dumps(extra)}</sd_cpp_extra_args>"
    out = gen({"prompt": prompt, "model": "klein-preset", "steps": 2}, defaults)
    req = out.request
    assert (req.width, req.height) == (320, 256)  # extra args over the preset
    assert req.sample_params.sample_steps == 2  # top level over extra args
    assert req.sample_params.eta == 0.5 and req.sample_params.guidance.txt_cfg == 1.0
    assert req.prompt == "a cat" and out.revised_prompt == "a cat"


def test_extra_args_model_applies_when_the_top_level_names_none_or_an_alias() -> None:
    prompt = 'x <sd_cpp_extra_args>{"model": "tiny"}</sd_cpp_extra_args>'
    assert gen({"prompt": prompt}).request.model == "tiny"
    assert gen({"prompt": prompt, "model": "gpt-image-1"}).request.model == "tiny"
    assert gen({"prompt": prompt, "model": "klein-preset"}).request.model == "klein-preset"


def test_url_format_and_lora_pass_through() -> None:
    out = gen({"prompt": "x", "response_format": "url", "lora": [{"path": "style"}]})
    assert out.response_format == "url"
    assert out.request.lora[0].path == "style"


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"", None, "empty"),
        (b"[]", None, "Expected `object`"),
        (b'{"n": 2}', None, "prompt"),
        (b'{"prompt": ""}', "prompt", "length"),
        (b'{"prompt": "x", "promt": "y"}', None, "promt"),
        (b'{"prompt": "x", "n": 0}', "n", "n"),
        (b'{"prompt": "x", "n": "two"}', "n", "n"),
        (b'{"prompt": "x", "response_format": "png"}', "response_format", "response_format"),
        (b'{"prompt": "x", "partial_images": 9}', "partial_images", "partial_images"),
        (b'{"prompt": "x", "sampler": "bogus"}', None, "unknown sample_method"),
        (b'{"prompt": "x", "seed": "abc"}', "seed", "seed"),
        (b'{"prompt": "<sd_cpp_extra_args>{bad</sd_cpp_extra_args>x"}', "prompt", "JSON"),
        (
            b'{"prompt": "<sd_cpp_extra_args>{\\"wdth\\": 1}</sd_cpp_extra_args>x"}',
            "prompt",
            "wdth",
        ),
        (b'{"prompt": "<sd_cpp_extra_args>{}</sd_cpp_extra_args>"}', "prompt", "empty"),
    ],
)
def test_bad_generation_bodies_are_400s(body: bytes, field: str | None, needle: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate.generation_to_request(body, FakeModels())
    assert needle in info.value.message
    if field is not None:
        assert info.value.field == field


def test_unknown_model_is_a_404() -> None:
    with pytest.raises(NotFoundError):
        gen({"prompt": "x", "model": "missing"})


# -- replies -----------------------------------------------------------------------------------


def _job() -> Job:
    refs = [ImageRef(i, f"{i:03d}-{7 + i}.png", 64, 80, 7 + i) for i in range(2)]
    return Job(
        id="job_1_ab",
        kind="img_gen",
        status="completed",
        created=1700000000.7,
        result=JobResult("png", refs),
    )


def test_images_response_b64() -> None:
    out = gen({"prompt": "x"})
    images = ["B64:000-7.png", "B64:001-8.png"]
    body = ImagesResponse.of(_job(), images, revised_prompt=out.revised_prompt)
    assert wire(body) == wire(
        {
            "created": 1700000000,
            "data": [{"b64_json": "B64:000-7.png"}, {"b64_json": "B64:001-8.png"}],
            "output_format": "png",
            "size": "64x80",
        }
    )


def test_images_response_url_and_revised_prompt() -> None:
    out = gen(
        {
            "prompt": 'cat <sd_cpp_extra_args>{"seed": 1}</sd_cpp_extra_args>',
            "response_format": "url",
        }
    )
    body = ImagesResponse.of(_job(), [], url_base="http://h:1/", revised_prompt=out.revised_prompt)
    assert wire(body.data[1]) == wire(
        {"url": "http://h:1/api/queue/job/job_1_ab/output/001-8.png", "revised_prompt": "cat"}
    )


def test_images_response_without_images_has_no_size() -> None:
    job = _job()
    job.result = JobResult("png", [])
    body = ImagesResponse.of(job, [])
    assert wire(body) == wire({"created": 1700000000, "data": [], "output_format": "png"})


def test_images_response_needs_a_result() -> None:
    job = _job()
    job.result = None
    with pytest.raises(ValueError):
        ImagesResponse.of(job, [])


def test_models_list() -> None:
    entry = ModelEntry(
        "tiny",
        "checkpoint",
        "/m/tiny.gguf",
        "tiny.gguf",
        1,
        1600000000.5,
        "gguf",
        "flux2",
        "checkpoint",
    )
    preset = ModelPreset(name="klein", diffusion_model="tiny")
    body = ModelList.of([entry, preset], started=1700000000.0)
    assert wire(body) == wire(
        {
            "object": "list",
            "data": [
                {"id": "tiny", "created": 1600000000, "owned_by": "local", "object": "model"},
                {"id": "klein", "created": 1700000000, "owned_by": "local", "object": "model"},
            ],
        }
    )


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
        (501, "not_implemented_error"),
    ],
)
def test_error_types(status: int, kind: str) -> None:
    body = errors.error_body(status, "c", "m", "p")
    assert wire(body) == wire({"error": {"message": "m", "type": kind, "param": "p", "code": "c"}})
    empty = errors.error_body(status, "c", "m")
    assert wire(empty) == wire(
        {"error": {"message": "m", "type": kind, "param": None, "code": "c"}}
    )


@pytest.mark.parametrize(
    ("field", "param"),
    [
        ("batch_count", "n"),
        ("width", "size"),
        ("sample_params.sample_steps", "steps"),
        ("ref_images[3]", "image"),
        ("mask_image", "mask"),
        ("lora[0].path", "lora"),
        ("prompt", "prompt"),
        (None, None),
    ],
)
def test_param_names(field: str | None, param: str | None) -> None:
    assert errors.param_of(field) == param


def test_unknown_model_gets_openais_code() -> None:
    # The lookup raises ModelNotFoundError (see test_resolve_model); its code is OpenAI's.
    exc = ModelNotFoundError("model 'x' not found", field="model")
    status, body = errors.exception_error(exc)
    assert status == 404
    assert body.error.code == "model_not_found" and body.error.param == "model"


@pytest.mark.parametrize(
    ("code", "status", "needle"),
    [
        ("model_load_failed", 500, "could not be loaded: bad file"),
        ("generation_failed", 500, "generation failed"),
        ("interrupted", 409, "stopped"),
        ("cancelled", 409, "cancelled"),
        ("server_restarted", 503, "restarted"),
        ("invalid_request", 400, "bad file"),
        ("something_new", 500, "bad file"),
    ],
)
def test_job_failures(code: str, status: int, needle: str) -> None:
    error = JobError(code, "bad file")
    job = Job(id="job_1_ab", kind="img_gen", status="failed", created=0.0, error=error)
    got, body = errors.exception_error(JobFailedError.from_job(job))
    assert got == status and needle in body.error.message
    assert body.error.code == code


# -- edits -------------------------------------------------------------------------------------

LIMITS = Limits()


def rgba_with_hole(size: tuple[int, int] = (64, 48)) -> Image.Image:
    image = Image.new("RGBA", size, (10, 200, 30, 255))
    image.paste((0, 0, 0, 0), (0, 0, 16, 16))  # the area to edit
    return image


def edit(
    fields: dict[str, str], images: list[bytes], mask: bytes | None = None, reference: bool = False
) -> translate.ImagesJob:
    model = translate.ModelChoice(None, {}, "flux2" if reference else "sd1")
    return edit_to_request(
        translate.parse_body(parse_fields(fields)), images, mask, model, limits=LIMITS
    )


def test_transparent_pixels_of_the_image_become_the_library_mask() -> None:
    out = edit({"prompt": "fill"}, [png(rgba_with_hole())])
    req = out.request
    assert (req.width, req.height, req.strength) == (64, 48, 1.0)
    assert req.init_image is not None and req.ref_images == []
    mask = decode(req.mask_image or "")
    assert mask.mode == "L" and mask.size == (64, 48)
    assert mask.getpixel((3, 3)) == 255  # transparent: repaint (white)
    assert mask.getpixel((40, 40)) == 0  # opaque: keep (black)


def test_mask_upload_alpha_is_read_the_openai_way() -> None:
    mask = png(rgba_with_hole())
    image = png(Image.new("RGB", (64, 48), "white"))
    req = edit({"prompt": "fill", "strength": "0.6"}, [image], mask).request
    converted = decode(req.mask_image or "")
    assert converted.getpixel((3, 3)) == 255 and converted.getpixel((40, 40)) == 0
    assert req.strength == 0.6  # an explicit strength wins over the masked default


def test_mask_without_alpha_is_white_means_repaint() -> None:
    mask = Image.new("L", (8, 8), 0)
    mask.putpixel((1, 1), 255)
    converted = library_mask(mask, (8, 8))
    assert converted.getpixel((1, 1)) == 255 and converted.getpixel((5, 5)) == 0


@pytest.mark.parametrize(
    ("mask", "needle"),
    [
        (Image.new("RGBA", (64, 48), (0, 0, 0, 255)), "no fully transparent"),
        (Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "same size"),
    ],
)
def test_bad_masks(mask: Image.Image, needle: str) -> None:
    image = png(Image.new("RGB", (64, 48)))
    with pytest.raises(InvalidRequestError) as info:
        edit({"prompt": "x"}, [image], png(mask))
    assert needle in info.value.message and info.value.field == "mask"


def test_opaque_image_without_mask_is_plain_img2img() -> None:
    req = edit({"prompt": "x", "size": "128x128"}, [png(Image.new("RGB", (64, 48)))]).request
    assert req.mask_image is None and req.strength == 0.75
    assert (req.width, req.height) == (128, 128)  # explicit size over the image's


def test_first_image_is_init_the_rest_references() -> None:
    images = [png(Image.new("RGB", (64, 48), c)) for c in ("red", "green", "blue")]
    req = edit({"prompt": "x"}, images).request
    assert req.init_image is not None
    assert [decode(r).getpixel((0, 0)) for r in req.ref_images] == [(0, 128, 0), (0, 0, 255)]


def test_reference_models_edit_through_references() -> None:
    images = [png(Image.new("RGB", (80, 64), c)) for c in ("red", "green")]
    req = edit({"prompt": "x"}, images, reference=True).request
    assert req.init_image is None and len(req.ref_images) == 2
    assert (req.width, req.height) == (80, 64)
    forced = edit({"prompt": "x", "edit_mode": "img2img"}, images, reference=True).request
    assert forced.init_image is not None and len(forced.ref_images) == 1
    # A transparent area means inpainting, even on a reference model.
    holed = edit({"prompt": "x"}, [png(rgba_with_hole())], reference=True).request
    assert holed.init_image is not None and holed.mask_image is not None


@pytest.mark.parametrize(
    ("fields", "images", "mask", "field"),
    [
        ({"prompt": "x"}, [], None, "image"),
        ({"prompt": "x"}, [b"not an image"], None, "image[0]"),
        ({"prompt": "x"}, [b""], None, "image[0]"),
        ({"prompt": "x"}, [png(Image.new("RGB", (8, 8)))], b"junk", "mask"),
        (
            {"prompt": "x", "edit_mode": "reference"},
            [png(Image.new("RGB", (8, 8)))],
            png(Image.new("L", (8, 8))),
            "mask",
        ),
        ({"prompt": "x", "n": "many"}, [png(Image.new("RGB", (8, 8)))], None, "n"),
        ({"prompt": "x", "strength": "2"}, [png(Image.new("RGB", (8, 8)))], None, "strength"),
        ({"prompt": "x", "edit_mode": "magic"}, [png(Image.new("RGB", (8, 8)))], None, "edit_mode"),
        ({"n": "1"}, [png(Image.new("RGB", (8, 8)))], None, "prompt"),
    ],
)
def test_bad_edits_are_400s(
    fields: dict[str, str], images: list[bytes], mask: bytes | None, field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        edit(fields, images, mask)
    assert info.value.field == field


def test_form_text_is_parsed() -> None:
    fields = parse_fields({"prompt": "x", "n": "2", "seed": "5", "cfg_scale": "1.5"})
    assert isinstance(fields, EditFields)
    assert (fields.n, fields.seed, fields.cfg_scale) == (2, 5, 1.5)


def test_partial_images_are_spread_over_the_steps() -> None:
    from sdrest.api.openai.streaming import partial_steps

    assert partial_steps(20, 3) == [5, 10, 15]
    assert partial_steps(6, 2) == [2, 4]
    assert partial_steps(2, 3) == [1, 1, 1]  # never step 0: there is no preview before step 1
    assert partial_steps(10, 0) == []


def test_edits_ask_for_the_architecture_of_the_main_file() -> None:
    class WithFlux2(FakeModels):
        def main_entry(self, name: str) -> ModelEntry:
            return ModelEntry(name, "diffusion_model", "/m/k.gguf", "k.gguf", 1, 1.0, "gguf",
                              "flux2", "diffusion_model")  # fmt: skip

    named = translate.parse_body(parse_fields({"prompt": "x", "model": "klein-preset"}))
    assert translate.choose_model(named, WithFlux2(), edit=True).architecture == "flux2"
    assert translate.choose_model(named, WithFlux2()).architecture is None  # generations: unasked
    # No default model to ask about: not a reference model (the submit reports the real error).
    unnamed = translate.parse_body(parse_fields({"prompt": "x"}))
    assert translate.choose_model(unnamed, FakeModels(), edit=True).architecture is None
