"""``<sd_cpp_extra_args>{json}</sd_cpp_extra_args>`` blocks in the prompts of the /v1 and /sdapi/v1
families: native stable-diffusion.cpp controls carried inside a compatibility request.

The first block is parsed with the sdcpp request schema (the same field rules as /sdcpp/v1, so a
typo is a 400 naming the field); every block is removed from the prompt.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from sdrest.errors import InvalidRequestError
from sdrest.schemas import ImgGenRequest

_BLOCK = re.compile(r"<sd_cpp_extra_args>(.*?)</sd_cpp_extra_args>", re.DOTALL)
_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def split_extra_args(prompt: str) -> tuple[str, dict[str, Any]]:
    """(prompt without any block, the first block's fields checked against the sdcpp schema)."""
    blocks = _BLOCK.findall(prompt)
    if not blocks:
        return prompt, {}
    cleaned = _BLOCK.sub("", prompt).strip()
    try:
        fields = _decoder.decode(blocks[0].strip())
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(
            f"sd_cpp_extra_args is not valid JSON: {exc}", field="prompt"
        ) from exc
    if not isinstance(fields, dict):
        raise InvalidRequestError("sd_cpp_extra_args must be a JSON object", field="prompt")
    try:
        msgspec.convert(fields, ImgGenRequest)  # same rules as /sdcpp/v1: unknown fields refused
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"sd_cpp_extra_args: {exc}", field="prompt") from exc
    return cleaned, fields
