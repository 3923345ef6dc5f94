"""The server <-> engine worker messages: what crosses the socket comes back the same."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from sdrest.engine import wire
from sdrest.engine.base import GenerationPlan, ModelSpec, ResolvedLora
from sdrest.errors import EngineError, ModelLoadError
from sdrest.schemas import ImgGenRequest, Progress
from sdrest.settings import LoadOptions


def _round_trip_call(codec: wire.Codec, call: wire.Call) -> wire.Call:
    frame = codec.frame(call)
    (size,) = wire.HEADER.unpack(frame[: wire.HEADER.size])
    assert size == len(frame) - wire.HEADER.size
    return codec.call(frame[wire.HEADER.size :])


def test_a_generation_plan_crosses_with_its_images_as_raw_pixels() -> None:
    codec = wire.Codec()
    init = Image.new("RGB", (8, 4), (1, 2, 3))
    plan = GenerationPlan(
        model=ModelSpec(name="m", model_path="/m.gguf", options=LoadOptions(threads=3)),
        request=ImgGenRequest(prompt="a cat", width=64, height=64),
        seed=7,
        init_image=init,
        mask_image=Image.new("L", (8, 4), 255),
        ref_images=(Image.new("RGBA", (2, 2), (9, 8, 7, 6)),),
        loras=(ResolvedLora("/l.safetensors", 0.5, is_high_noise=True),),
        preview_method="proj",
    )
    back = _round_trip_call(codec, wire.GenerateCall(plan, previews=True))
    assert isinstance(back, wire.GenerateCall) and back.previews
    got = back.plan
    assert got.model == plan.model and got.loras == plan.loras and got.seed == 7
    assert got.request == plan.request and got.preview_method == "proj"
    assert got.init_image is not None and got.init_image.tobytes() == init.tobytes()
    assert got.mask_image is not None and got.mask_image.mode == "L"
    assert got.ref_images[0].getpixel((1, 1)) == (9, 8, 7, 6)
    assert dataclasses.replace(got, init_image=None, mask_image=None, ref_images=()) == (
        dataclasses.replace(plan, init_image=None, mask_image=None, ref_images=())
    )


def test_replies_round_trip() -> None:
    codec = wire.Codec()
    image = Image.new("RGB", (3, 2), (10, 20, 30))
    for reply in (
        wire.Ready(pid=1, library_version="v", system_info="AVX = 1"),
        wire.ProgressEvent(Progress("sampling", 2, 4, 0.5)),
        wire.LogLine("sdrest.native", 20, "loading tensors"),
        wire.Failed("ModelLoadError", "bad file", ["m"]),
    ):
        assert codec.reply(codec.frame(reply)[wire.HEADER.size :]) == reply
    done = codec.reply(codec.frame(wire.Done([image], ["m"]))[wire.HEADER.size :])
    assert isinstance(done, wire.Done) and done.images[0].tobytes() == image.tobytes()


def test_failures_keep_their_error_class_and_unknown_ones_become_engine_errors() -> None:
    with pytest.raises(ModelLoadError, match="bad file"):
        wire.raise_failure(wire.failure(ModelLoadError("bad file"), []))
    unexpected = wire.failure(KeyError("x"), ["m"])
    assert unexpected.error == "EngineError" and "KeyError" in unexpected.message
    with pytest.raises(EngineError):
        wire.raise_failure(wire.Failed("NotAnError", "?", []))
    with pytest.raises(EngineError):
        wire.raise_failure(wire.Failed("ModelSpec", "a name that is not an error class", []))
