"""Pure translations of /sdcpp/v1 bodies onto the canonical request (answers: ``responses``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import msgspec

from sdrest.api.common import compose_request, decode_json
from sdrest.api.json_limits import decode_client_json
from sdrest.errors import InvalidRequestError
from sdrest.schemas import ImgGenRequest, RequestLayer
from sdrest.settings import deep_merge

logger = logging.getLogger(__name__)
_request_decoder = msgspec.json.Decoder(ImgGenRequest)
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_IMAGE_FIELDS = ("init_image", "ref_images", "mask_image", "control_image")


def to_request(
    body: bytes, defaults_for: Callable[[str | None], RequestLayer], strict: bool = False
) -> tuple[ImgGenRequest, list[str]]:
    """Decode an img_gen body; fields the client left out take the model's preset defaults.
    Fields the schema does not know are left out and named in the returned warnings (a 400
    with ``strict``, ``--strict-requests``)."""
    try:
        request = decode_json(body, _request_decoder)
    except InvalidRequestError as exc:
        if strict or "unknown field" not in exc.message:
            raise
        unknown: list[str] = []
        tree = _known_only(decode_client_json(body, _any_decoder), ImgGenRequest, "", unknown)
        request = compose_request(defaults_for(tree.get("model")), tree)
        logger.warning("request fields ignored (unknown): %s", ", ".join(unknown))
        return request, [f"unknown field `{name}` ignored" for name in unknown]
    defaults = defaults_for(request.model)
    if not defaults:
        return request, []  # the common case: one typed decode, nothing merged
    return compose_request(defaults, decode_client_json(body, _any_decoder)), []


def _struct_of(kind: msgspec.inspect.Type) -> type[msgspec.Struct] | None:
    """The Struct class a field holds (directly or as an optional), if any."""
    if isinstance(kind, msgspec.inspect.UnionType):
        structs = [t for t in kind.types if isinstance(t, msgspec.inspect.StructType)]
        return structs[0].cls if structs else None
    return kind.cls if isinstance(kind, msgspec.inspect.StructType) else None


def _known_only(tree: Any, struct: type[msgspec.Struct], path: str, unknown: list[str]) -> Any:
    """``tree`` (decoded JSON) without the object keys ``struct`` does not declare, at any depth;
    their dotted paths are added to ``unknown``. Values of the wrong type are left for the
    conversion to refuse."""
    if not isinstance(tree, dict):
        return tree
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {field.encode_name: field.type for field in info.fields}
    known: dict[str, Any] = {}
    for key, value in tree.items():
        if key not in fields:
            unknown.append(path + key)
            continue
        kind = fields[key]
        inner = _struct_of(kind)
        if inner is not None:
            value = _known_only(value, inner, f"{path}{key}.", unknown)
        elif isinstance(kind, msgspec.inspect.ListType) and isinstance(value, list):
            item = _struct_of(kind.item_type)
            if item is not None:
                value = [_known_only(v, item, f"{path}{key}[].", unknown) for v in value]
        known[key] = value
    return known


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
