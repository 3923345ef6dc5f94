"""THE one decode of JSON a client sends (request bodies, JSON inside a field, ``/ws`` messages):
nesting is bounded before anything recurses over the value.

msgspec (and ``json``) decode nested arrays and objects recursively and raise ``RecursionError``
near the interpreter's recursion limit (about 1,000 levels): unhandled, that was a 500 with a
traceback, and uvicorn closed the keep-alive connection. What decodes still reaches code that
recurses over the value (``deep_merge``, ``msgspec.convert``, the encoder of an echoed body), so
nesting is also checked against :data:`MAX_JSON_DEPTH` on the raw bytes, with C-speed byte
operations. Both are a 400 saying ``max depth``, in the family's shape.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from sdrest.errors import InvalidRequestError

T = TypeVar("T")

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in JSON a client sends (every family)."""

# Brackets only, both kinds as one (depth does not care which; a mismatch is the decoder's).
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep_message(limit: int = MAX_JSON_DEPTH) -> str:
    """What every family says about JSON nested too deeply (``max depth`` in it)."""
    return f"JSON is nested too deeply: the max depth is {limit} levels of arrays and objects"


def json_depth_exceeds(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of ``data`` nest deeper than ``limit`` (brackets inside
    strings do not count). C-speed byte operations: a body with no more than ``limit`` openers
    in all is answered by two counts; otherwise strings are cut out and at most ``limit``
    passes remove the innermost pairs. Malformed input may answer either way (the decoder
    refuses it anyway). Several seconds for a 64 MiB body of brackets, less than decoding it:
    call it after the decoder has succeeded (:func:`decode_client_json`)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    # Outside strings only: escaped backslashes, then escaped quotes, go first; every other
    # part of the split on quotes is then a string's content.
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(_AS_SQUARE, _NOT_BRACKETS)
    if b"[" * (limit + 1) in brackets:  # the plain deep nest, found at once
        return True
    for _ in range(limit):
        # Each pass removes every innermost pair: a group ``n`` levels high is gone after
        # ``n`` passes, so whatever is left after ``limit`` passes nests deeper than that.
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # nothing left, or not balanced: the decoder judges
            return False
        brackets = shorter
    return b"[" in brackets


def check_json_depth(
    data: bytes | str, *, field: str | None = None, limit: int = MAX_JSON_DEPTH
) -> None:
    """400 (``InvalidRequestError`` naming ``field``) when ``data`` nests deeper than ``limit``."""
    if json_depth_exceeds(data, limit):
        raise InvalidRequestError(too_deep_message(limit), field=field)


def decode_client_json(
    data: bytes | str, decoder: msgspec.json.Decoder[T], *, field: str | None = None
) -> T:
    """``decoder.decode(data)``, refused (400 naming ``field``) when ``data`` nests deeper than
    :data:`MAX_JSON_DEPTH`, whether the decoder took it or not. The decoder goes first: a
    hostile deep nest stops it at once (``RecursionError``), where scanning it would take
    longer. Its own errors (``msgspec.DecodeError``, ``ValidationError``) pass through, for the
    caller's family to map, when the nesting is within the limit."""
    try:
        value = decoder.decode(data)
    except RecursionError:
        raise InvalidRequestError(too_deep_message(), field=field) from None
    except msgspec.MsgspecError:
        check_json_depth(data, field=field)  # too deep says more than "unknown field `a`"
        raise
    check_json_depth(data, field=field)
    return value
