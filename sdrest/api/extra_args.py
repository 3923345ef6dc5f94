"""``<sd_cpp_extra_args>{json}</sd_cpp_extra_args>`` blocks in the prompts of the /v1 and /sdapi/v1
families: native stable-diffusion.cpp controls carried inside a compatibility request.

The first block is parsed with the sdcpp request schema (the same field rules as /sdcpp/v1, so a
typo is a 400 naming the field); every block is removed from the prompt.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sdrest.api.json_limits import decode_client_json
from sdrest.errors import InvalidRequestError
from sdrest.schemas import ImgGenRequest

_OPEN, _CLOSE = "<sd_cpp_extra_args>", "</sd_cpp_extra_args>"
_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def _find_blocks(prompt: str) -> tuple[list[str], list[str]]:
    """(each block's content, the text around them), in one linear pass: a regex with a lazy
    ``.*?`` rescans to the end from every unclosed opening tag, quadratic in the prompt."""
    blocks: list[str] = []
    kept: list[str] = []
    pos = 0
    while (start := prompt.find(_OPEN, pos)) >= 0:
        end = prompt.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            break  # no closing tag after this one: none after any later opening tag either
        kept.append(prompt[pos:start])
        blocks.append(prompt[start + len(_OPEN) : end])
        pos = end + len(_CLOSE)
    kept.append(prompt[pos:])
    return blocks, kept


def split_extra_args(prompt: str) -> tuple[str, dict[str, Any]]:
    """(prompt without any block, the first block's fields checked against the sdcpp schema)."""
    blocks, kept = _find_blocks(prompt)
    if not blocks:
        return prompt, {}
    cleaned = "".join(kept).strip()
    try:
        fields = decode_client_json(blocks[0].strip(), _decoder, field="prompt")
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
