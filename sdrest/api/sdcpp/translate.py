"""Pure translations of /sdcpp/v1 bodies onto the canonical request (answers: ``responses``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import msgspec

from sdrest.api.common import compose_request, decode_json
from sdrest.api.json_limits import decode_client_json
from sdrest.schemas import ImgGenRequest, RequestLayer
from sdrest.settings import deep_merge

_request_decoder = msgspec.json.Decoder(ImgGenRequest)
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_IMAGE_FIELDS = ("init_image", "ref_images", "mask_image", "control_image")


def to_request(body: bytes, defaults_for: Callable[[str | None], RequestLayer]) -> ImgGenRequest:
    """Decode an img_gen body; fields the client left out take the model's preset defaults."""
    request = decode_json(body, _request_decoder)
    defaults = defaults_for(request.model)
    if not defaults:
        return request  # the common case: one typed decode, nothing merged
    return compose_request(defaults, decode_client_json(body, _any_decoder))


def full_defaults(defaults: RequestLayer) -> RequestLayer:
    """The whole canonical request with a model's defaults over it (capabilities' ``defaults``)."""
    base = msgspec.to_builtins(ImgGenRequest())
    for name in (*_IMAGE_FIELDS, "model", "lora"):
        base.pop(name, None)
    # The builtins form of the request (every field) under a layer: a layer, merged untyped.
    merged = cast(RequestLayer, deep_merge(base, defaults))
    sample = merged["sample_params"]
    # The spec types these as strings; "default" is the library's own name for "model default".
    sample["scheduler"] = sample.get("scheduler") or "default"
    sample["sample_method"] = sample.get("sample_method") or "default"
    return merged
