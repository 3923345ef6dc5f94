"""Prompt length (``max_prompt_chars`` and the native byte ceiling), the linear extra-args
split, prompt LoRA tags, and sizes in limit messages."""

from __future__ import annotations

import time

import pytest
from starlette.requests import Request

from sdrest import planning
from sdrest.api.common import PayloadTooLargeError, read_body
from sdrest.api.extra_args import split_extra_args
from sdrest.api.sdapi.prompt_loras import MAX_TAGS, extract_prompt_loras
from sdrest.errors import InvalidRequestError
from sdrest.schemas import ImgGenRequest
from sdrest.settings import Limits, load_settings
from sdrest.units import format_bytes


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1000, "1000 bytes"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (64 * 1024 * 1024, "64 MiB"),
        (int(32.5 * 1024 * 1024), "32.5 MiB"),
        (3 << 30, "3 GiB"),
        (1 << 50, "1048576 GiB"),
    ],
)
def test_sizes_read_in_the_unit_that_fits(count: int, text: str) -> None:
    assert format_bytes(count) == text


def _request(body: bytes, declared: bool) -> Request:
    headers = [(b"content-length", str(len(body)).encode())] if declared else []
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        chunk, sent = (b"" if sent else body), True
        return {"type": "http.request", "body": chunk, "more_body": False}

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


@pytest.mark.parametrize("declared", [True, False])
@pytest.mark.parametrize(
    ("limit", "shown"), [(100, "100 bytes"), (2048, "2 KiB"), (3 << 20, "3 MiB")]
)
async def test_a_413_names_a_small_limit_in_its_own_unit(
    declared: bool, limit: int, shown: str
) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        await read_body(_request(b"x" * (limit + 1), declared), limit=limit)
    assert caught.value.message == f"request body over {shown}"
    assert "0 MiB" not in caught.value.message


def test_the_prompt_limit_counts_characters_in_both_prompts() -> None:
    limits = Limits(max_prompt_chars=10)
    planning.check_limits(ImgGenRequest(prompt="é" * 10, negative_prompt="x" * 10), limits)
    for field, request in (
        ("prompt", ImgGenRequest(prompt="x" * 11)),
        ("negative_prompt", ImgGenRequest(negative_prompt="x" * 11)),
    ):
        with pytest.raises(InvalidRequestError) as caught:
            planning.check_limits(request, limits)
        assert caught.value.field == field
        assert "11 characters" in caught.value.message and "at most 10" in caught.value.message


def test_no_setting_lets_a_prompt_past_the_native_byte_ceiling() -> None:
    limits = Limits(max_prompt_chars=1_000_000)
    ceiling = planning.NATIVE_PROMPT_BYTES
    planning.check_limits(ImgGenRequest(prompt="x" * ceiling), limits)
    for text in ("x" * (ceiling + 1), "\U00020000" * (ceiling // 4 + 1)):
        with pytest.raises(InvalidRequestError) as caught:
            planning.check_limits(ImgGenRequest(prompt=text), limits)
        assert caught.value.field == "prompt" and "bytes of UTF-8" in caught.value.message


def test_the_default_is_the_measured_safe_one_and_settable() -> None:
    assert Limits().max_prompt_chars == 2000
    # 4 bytes per character at most: the default is under the native ceiling for any text
    assert Limits().max_prompt_chars * 4 <= planning.NATIVE_PROMPT_BYTES
    env = {"SDREST_MAX_PROMPT_CHARS": "300"}
    assert load_settings({}, env=env).limits.max_prompt_chars == 300
    assert load_settings({"max_prompt_chars": 7}, env=env).limits.max_prompt_chars == 7


def test_extra_args_split_is_linear_on_unclosed_blocks() -> None:
    hostile = "<sd_cpp_extra_args>" * 200_000  # 3.8 MB; the old lazy regex took minutes
    started = time.perf_counter()
    assert split_extra_args(hostile) == (hostile, {})
    assert time.perf_counter() - started < 1.0


def test_extra_args_split_keeps_its_meaning() -> None:
    prompt = 'a <sd_cpp_extra_args>{"seed": 3}</sd_cpp_extra_args> b<sd_cpp_extra_args>{}'
    text, fields = split_extra_args(prompt + "</sd_cpp_extra_args> c <sd_cpp_extra_args>")
    assert fields == {"seed": 3} and text == "a  b c <sd_cpp_extra_args>"


def test_prompt_lora_tags_stop_at_the_first_tag_too_many() -> None:
    text, loras = extract_prompt_loras("a <lora:s:0.5> b", ["s"])
    assert text == "a  b" and len(loras) == 1
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_TAGS}"):
        extract_prompt_loras("<lora:s>" * 100_000, ["s"])
