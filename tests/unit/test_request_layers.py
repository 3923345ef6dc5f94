"""The typed request layers mirror the canonical request's Structs, key for key, so a layer a
family builds can never name a field the request does not have (mypy checks the builders)."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

from sdrest.api.common import compose_request
from sdrest.schemas import (
    GuidanceLayer,
    GuidanceParams,
    HiresLayer,
    HiresParams,
    ImgGenRequest,
    LoraLayer,
    LoraSpec,
    RequestLayer,
    SampleLayer,
    SampleParams,
    SlgLayer,
    SlgParams,
    VaeTilingLayer,
    VaeTilingParams,
)

MIRRORS: dict[type[msgspec.Struct], Any] = {
    SlgParams: SlgLayer,
    GuidanceParams: GuidanceLayer,
    SampleParams: SampleLayer,
    LoraSpec: LoraLayer,
    VaeTilingParams: VaeTilingLayer,
    HiresParams: HiresLayer,
    ImgGenRequest: RequestLayer,
}


@pytest.mark.parametrize("struct", list(MIRRORS), ids=lambda s: s.__name__)
def test_each_layer_has_exactly_the_fields_of_its_struct(struct: type[msgspec.Struct]) -> None:
    layer = MIRRORS[struct]
    fields = msgspec.structs.fields(struct)
    assert list(layer.__annotations__) == [f.name for f in fields]  # same names, same order
    # Every key optional (a layer says only what it sets), but what the Struct requires.
    assert layer.__required_keys__ == {f.name for f in fields if f.required}
    assert layer.__optional_keys__ == {f.name for f in fields if not f.required}


@pytest.mark.parametrize("struct", list(MIRRORS), ids=lambda s: s.__name__)
def test_nested_structs_are_mirrored_by_their_layers(struct: type[msgspec.Struct]) -> None:
    layer_hints = typing.get_type_hints(MIRRORS[struct])
    for name, hint in typing.get_type_hints(struct).items():
        if hint in MIRRORS:
            assert layer_hints[name] is MIRRORS[hint], name
        elif typing.get_origin(hint) is list and typing.get_args(hint)[0] in MIRRORS:
            item = MIRRORS[typing.get_args(hint)[0]]
            assert typing.get_origin(layer_hints[name]) is list, name
            assert typing.get_args(layer_hints[name]) == (item,), name


def _every_field_set() -> ImgGenRequest:
    return ImgGenRequest(
        prompt="a cat",
        seed=7,
        init_image="aW1n",
        ref_images=["cmVm"],
        mask_image="bWFzaw==",
        control_image="Y3RybA==",
        sample_params=SampleParams(
            scheduler="karras",
            sample_method="euler",
            eta=0.5,
            custom_sigmas=[1.0, 0.5],
            flow_shift=3.0,
            guidance=GuidanceParams(img_cfg=1.5, slg=SlgParams(layers=[1], scale=2.5)),
        ),
        lora=[LoraSpec(path="style", multiplier=0.5, is_high_noise=True)],
        vae_tiling_params=VaeTilingParams(enabled=True, tile_size_x=64, tile_size_y=64),
        hires=HiresParams(enabled=True, upscaler="model", upscaler_model="esrgan", steps=4),
        output_format="webp",
        model="tiny",
    )


@pytest.mark.parametrize("request_", [ImgGenRequest(), _every_field_set()], ids=["default", "set"])
def test_the_wire_form_of_a_request_is_a_layer(request_: ImgGenRequest) -> None:
    # msgspec checks every value against the layer's types: they are the Structs' wire types.
    wire = msgspec.to_builtins(request_)
    assert msgspec.convert(wire, RequestLayer) == wire
    assert compose_request(wire) == request_


def test_a_typical_layer_composes_into_the_request_it_says() -> None:
    defaults: RequestLayer = {
        "width": 1024,
        "vae_tiling_params": {"enabled": True},
        "sample_params": {"sample_steps": 4, "guidance": {"txt_cfg": 1.0}},
    }
    layer: RequestLayer = {
        "prompt": "a cat",
        "height": 768,
        "sample_params": {"sample_method": "euler", "guidance": {"distilled_guidance": 2.5}},
        "lora": [{"path": "style", "multiplier": 0.8}],
        "hires": {"enabled": True, "scale": 1.5},
        "model": "tiny",
    }
    request = compose_request(defaults, layer)
    assert (request.prompt, request.width, request.height) == ("a cat", 1024, 768)
    sample = request.sample_params
    assert (sample.sample_steps, sample.sample_method) == (4, "euler")
    assert (sample.guidance.txt_cfg, sample.guidance.distilled_guidance) == (1.0, 2.5)
    assert request.lora == [LoraSpec(path="style", multiplier=0.8)]
    assert request.hires.enabled and request.hires.scale == 1.5
    assert request.vae_tiling_params.enabled and request.model == "tiny"
