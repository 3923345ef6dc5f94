"""Pure /api translations: spec bodies -> canonical requests, jobs -> spec documents, model
listing filters/sort/paging."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdrest.api.rest import model_views, translate, views
from sdrest.api.rest.errors import REST_CODES, ValidationFailedError, error_body, rest_code
from sdrest.api.rest.model_responses import ModelView
from sdrest.api.rest.schemas import GenerateBody, UpscaleBody
from sdrest.errors import InvalidRequestError
from sdrest.schemas import ImageRef, Job, JobError, JobResult, Progress, RequestLayer

_decoder = msgspec.json.Decoder(GenerateBody)


def _body(**fields: Any) -> GenerateBody:
    return msgspec.convert({"prompt": "a cat", **fields}, GenerateBody)


def test_spec_fields_map_onto_the_canonical_request() -> None:
    request = translate.to_request(
        _body(
            negative_prompt="blurry",
            width=768,
            height=512,
            steps=12,
            cfg_scale=4.5,
            sampling_method="dpmpp2s_a",
            scheduler="Karras",
            seed=7,
            batch_count=3,
            clip_skip=2,
            output_format="jpeg",
            vae_tiling=True,
        ),
        "text2img",
        "tiny",
        {},
    )
    sample = request.sample_params
    assert (request.prompt, request.negative_prompt) == ("a cat", "blurry")
    assert (request.width, request.height, request.seed, request.batch_count) == (768, 512, 7, 3)
    assert (sample.sample_steps, sample.guidance.txt_cfg) == (12, 4.5)
    assert (sample.sample_method, sample.scheduler) == ("dpm++2s_a", "karras")
    assert request.clip_skip == 2 and request.output_format == "jpeg" and request.model == "tiny"
    assert request.vae_tiling_params.enabled is True


def _leaf_paths(layer: Mapping[str, object], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for key, value in layer.items():
        if isinstance(value, Mapping):
            paths += _leaf_paths(value, f"{prefix}{key}.")
        else:
            paths.append(prefix + key)
    return paths


def test_the_body_layer_puts_every_spec_field_at_its_field_path_in_order() -> None:
    # FIELD_PATHS also names the fields of errors: the layer must agree with it, key for key.
    body = _body(
        negative_prompt="n", width=64, height=64, steps=2, cfg_scale=1.0, distilled_guidance=2.0,
        sampling_method="euler", scheduler="karras", batch_count=1, clip_skip=1, strength=0.5,
        init_image="i", mask_image="m", control_image="c", control_strength=0.5,
        output_format="png", output_compression=90,
    )  # fmt: skip
    layer = translate._fields(body, body.init_image)
    expected = [
        path
        for name, path in translate.FIELD_PATHS.items()
        if name != "model_name" and not path.startswith("model_options.")
    ]
    assert _leaf_paths(layer) == expected


def test_left_out_fields_take_the_preset_defaults_and_given_ones_win() -> None:
    defaults: RequestLayer = {
        "width": 1024,
        "sample_params": {"sample_steps": 4, "guidance": {"txt_cfg": 1.0}},
    }
    request = translate.to_request(
        _body(height=640, steps=6), "text2img", "p", defaults
    )
    assert (request.width, request.height) == (1024, 640)
    assert request.sample_params.sample_steps == 6 and request.sample_params.guidance.txt_cfg == 1.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("random", -1), ("", -1), ("-1", -1), (-5, -1), (42, 42), ("123", 123)],
)
def test_seed(value: int | str | None, expected: int | None) -> None:
    assert translate.parse_seed(value) == expected


def test_bad_seed_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        translate.parse_seed("lucky")
    assert caught.value.field == "seed"


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("dpmpp2m", "dpm++2m"),
        ("DPM++2M", "dpm++2m"),
        ("Euler a", "euler_a"),
        ("dpmpp2mv2", "dpm++2mv2"),
    ],
)
def test_sampler_spellings(spelling: str, name: str) -> None:
    assert translate.sampler_name(spelling) == name


def test_errors_name_fields_as_the_client_sent_them() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        translate.to_request(_body(steps=0), "text2img", None, {})
    assert caught.value.field == "steps" and "$.steps" in caught.value.message
    with pytest.raises(ValidationFailedError) as caught:
        translate.to_request(_body(cfg_scale=-1.0), "text2img", None, {})
    assert caught.value.field == "cfg_scale"


def test_modes_check_their_images() -> None:
    with pytest.raises(InvalidRequestError, match="img2img"):
        translate.to_request(_body(init_image="abc"), "text2img", None, {})
    with pytest.raises(InvalidRequestError, match="init_image"):
        translate.to_request(_body(), "img2img", None, {})
    with pytest.raises(InvalidRequestError, match="mask_image"):
        translate.to_request(_body(init_image="abc"), "inpainting", None, {})
    request = translate.to_request(
        _body(source_image="abc", mask_image="def"), "inpainting", None, {}
    )
    assert (request.init_image, request.mask_image) == ("abc", "def")


def test_decode_tells_malformed_from_invalid() -> None:
    with pytest.raises(InvalidRequestError, match="malformed") as malformed:
        translate.decode(b"{", _decoder)
    assert not isinstance(malformed.value, ValidationFailedError)
    with pytest.raises(ValidationFailedError) as invalid:
        translate.decode(b'{"width": "x"}', _decoder)
    assert invalid.value.field == "width"
    # A generation body's unknown fields are listed, not refused (unless --strict-requests).
    assert translate.decode(b'{"wdith": 5}', _decoder).width is None
    assert translate.unknown_fields(b'{"wdith": 5, "prompt": "x"}', GenerateBody) == ["wdith"]
    assert translate.unknown_field_warnings(["wdith"], strict=False) == [
        "unknown field `wdith` ignored"
    ]
    with pytest.raises(ValidationFailedError, match="strict") as strict:
        translate.unknown_field_warnings(["wdith"], strict=True)
    assert strict.value.field == "wdith"


def test_upscale_body() -> None:
    request = translate.to_upscale(UpscaleBody(init_image="abc", model_name="x4", repeats=2))
    assert (request.image, request.upscaler, request.repeats) == ("abc", "x4", 2)
    with pytest.raises(ValidationFailedError):
        translate.to_upscale(UpscaleBody(image="abc", esrgan_model="x4", repeats=9))


def _job(**fields: Any) -> Job:
    base: dict[str, Any] = {"id": "job_1_ab", "kind": "img_gen", "created": 100.0, "owner": "alice"}
    base.update(fields)
    return Job(**base)


def test_job_view_of_a_running_job() -> None:
    job = _job(status="generating", started=101.0, progress=Progress("sampling", 5, 20, 0.5))
    view = msgspec.to_builtins(views.job_view(job, 0, now=103.5))
    assert view["status"] == "processing" and view["position"] == 0
    assert (view["progress"], view["current_step"], view["total_steps"]) == (0.25, 5, 20)
    assert view["time_elapsed"] == 2500 and view["time_remaining"] == 7500
    assert view["speed"] == 2.0 and view["outputs"] == [] and view["end_time"] is None


def test_job_view_of_finished_jobs() -> None:
    refs = [ImageRef(0, "0.png", 64, 64, 5), ImageRef(1, "1.png", 64, 64, 6)]
    job = _job(status="completed", started=101.0, completed=104.0, result=JobResult("png", refs))
    view = msgspec.to_builtins(views.job_view(job, 0, now=999.0))
    assert view["time_elapsed"] == 3000 and view["time_remaining"] == 0 and view["progress"] == 1.0
    assert view["outputs"][1]["url"] == "/api/queue/job/job_1_ab/output/1.png"
    assert view["outputs"][1]["thumbnail_url"].endswith("1.png?thumb=true")
    failed_job = _job(status="failed", error=JobError("x", "boom"))
    failed = msgspec.to_builtins(views.job_view(failed_job, 0))
    assert failed["error"] == {"code": "x", "message": "boom"}
    update = msgspec.to_builtins(views.ws_job_update(job, now=999.0))
    assert update["outputs"] == [
        "/api/queue/job/job_1_ab/output/0.png",
        "/api/queue/job/job_1_ab/output/1.png",
    ]


def test_error_codes_come_from_one_table() -> None:
    assert rest_code("forbidden") == "INSUFFICIENT_PERMISSIONS"
    assert rest_code("invalid_request") == "INVALID_PARAMETERS"
    assert rest_code("something_new") == "SOMETHING_NEW"
    assert set(REST_CODES.values()) >= {
        "AUTH_REQUIRED",
        "INVALID_CREDENTIALS",
        "MODEL_NOT_FOUND",
        "MODEL_NOT_LOADED",
        "JOB_NOT_FOUND",
        "VALIDATION_ERROR",
        "INTERNAL_ERROR",
    }
    error = error_body(404, "job_not_found", "gone", "req_1", field="job_id")
    body = msgspec.to_builtins(error)["error"]
    assert (
        body["code"] == "JOB_NOT_FOUND" and body["status_code"] == 404 and body["field"] == "job_id"
    )


def _view(
    name: str, type: str = "checkpoint", size: int = 1, modified: float = 0.0, loaded: bool = False
) -> ModelView:
    return model_views.model_view(
        name=name,
        type=type,
        path=f"{type}/{name}.gguf",
        size=size,
        modified=modified,
        architecture="sd1",
        format="gguf",
        loaded=loaded,
        sha256=None,
    )


VIEWS = [
    _view("b", size=30, modified=3),
    _view("A", size=10, modified=1, loaded=True),
    _view("c", type="lora", size=20, modified=2),
    _view("d", type="vae", size=40, modified=4),
]


def _names(**params: str) -> list[str]:
    query = model_views.parse_model_query(params)
    return [v.name for v in model_views.list_models(list(VIEWS), query).models]


def test_model_listing() -> None:
    assert _names() == ["A", "b", "c", "d"]
    assert _names(sort_by="size", sort_order="desc") == ["d", "b", "c", "A"]
    assert _names(sort_by="date") == ["A", "c", "b", "d"]
    assert _names(sort_by="loaded") == ["A", "b", "c", "d"]
    assert _names(sort_by="type") == ["A", "b", "c", "d"]
    assert _names(type="checkpoints") == ["A", "b"]
    assert _names(search="LORA") == ["c"]
    assert _names(loaded="false") == ["b", "c", "d"]
    assert _names(limit="3", page="2") == ["d"]
    assert _names(limit="0") == ["A", "b", "c", "d"]
    assert _names(limit="2", page="9") == []


@pytest.mark.parametrize(
    "params",
    [
        {"sort_by": "x"},
        {"sort_order": "sideways"},
        {"limit": "-1"},
        {"page": "0"},
        {"limit": "1.5"},
    ],
)
def test_bad_listing_parameters(params: dict[str, str]) -> None:
    with pytest.raises(InvalidRequestError):
        model_views.parse_model_query(params)


def test_model_stats() -> None:
    stats = msgspec.to_builtins(model_views.model_stats(VIEWS, ("A",)))
    assert stats["total_size"] == 100 and stats["by_type"]["checkpoint"] == {"count": 2, "size": 40}
    assert stats["loaded_count"] == 1 and stats["by_architecture"] == {"sd1": 4}


def test_loading_does_not_count_as_progress() -> None:
    from sdrest.schemas import ImgGenRequest, SampleParams

    request = ImgGenRequest(sample_params=SampleParams(sample_steps=8))
    loading = _job(
        status="generating", started=1.0, request=request, progress=Progress("loading", 90, 100)
    )
    view = msgspec.to_builtins(views.timing(loading, now=2.0))
    assert (view["progress"], view["current_step"], view["total_steps"]) == (0.0, 0, 8)
    assert view["time_remaining"] is None and view["speed"] == 0.0


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
_keys = st.sampled_from([f.name for f in msgspec.structs.fields(GenerateBody)] + ["bogus"])


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(_keys, _json_values, max_size=6),
    mode=st.sampled_from(["text2img", "img2img", "inpainting", "controlnet"]),
)
def test_any_body_is_a_request_or_a_400(body: dict[str, Any], mode: translate.Mode) -> None:
    raw = msgspec.json.encode(body)
    try:
        decoded = translate.decode(raw, _decoder)
        translate.to_request(decoded, mode, None, {})
    except InvalidRequestError as exc:
        assert exc.status == 400 and exc.message
