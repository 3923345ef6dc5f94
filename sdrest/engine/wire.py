"""What crosses the pipe between the server and its engine worker process.

One call at a time goes to the worker; progress, previews and log lines come back while it runs,
then one ``Done`` or ``Failed``. Frames are a 4-byte big-endian length and a msgpack body.
Images cross as raw pixels (mode, size, bytes): nothing is encoded on either side, so the only
encoding of an output image is the one the server writes to disk.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
from PIL import Image

from sdrest import errors
from sdrest.engine.base import ConvertPlan, GenerationPlan, ModelSpec, UpscalePlan
from sdrest.schemas import Progress

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 31
"""Larger than any image a request may produce; a corrupt length fails instead of allocating."""


# -- server -> worker ---------------------------------------------------------------------------


class GenerateCall(msgspec.Struct, tag="generate"):
    """Generate; ``previews`` asks for live previews."""

    plan: GenerationPlan
    previews: bool


class UpscaleCall(msgspec.Struct, tag="upscale"):
    """ESRGAN upscale of one image."""

    plan: UpscalePlan


class ConvertCall(msgspec.Struct, tag="convert"):
    """Quantize a model file."""

    plan: ConvertPlan


class LoadCall(msgspec.Struct, tag="load"):
    """Load (or keep) a model context."""

    spec: ModelSpec


class UnloadCall(msgspec.Struct, tag="unload"):
    """Free one model's context (the others stay loaded)."""

    name: str


class ConfigureCall(msgspec.Struct, tag="configure"):
    """The worker's settings, for a worker started before they were read (``sdrest serve``
    starts its worker first thing: see sdrest/entry.py)."""

    memory_budget: int
    nice: int
    log_level: int


Call = GenerateCall | UpscaleCall | ConvertCall | LoadCall | UnloadCall | ConfigureCall


# -- worker -> server ---------------------------------------------------------------------------


class Ready(msgspec.Struct, tag="ready"):
    """The worker's first message: the library loaded."""

    pid: int
    library_version: str
    system_info: str


class ProgressEvent(msgspec.Struct, tag="progress"):
    """A progress report of the running call."""

    progress: Progress


class PreviewEvent(msgspec.Struct, tag="preview"):
    """A live preview of the running generation."""

    step: int
    image: Image.Image


class LogLine(msgspec.Struct, tag="log"):
    """A log record of the worker, logged again on the server."""

    logger: str
    level: int
    message: str


class Done(msgspec.Struct, tag="done"):
    """The call succeeded; ``loaded`` lists the loaded models, most recent last."""

    images: list[Image.Image]
    loaded: list[str]


class Failed(msgspec.Struct, tag="failed"):
    """The call failed with a domain error; the worker goes on serving."""

    error: str
    """Name of the :mod:`sdrest.errors` class to raise on the server side."""
    message: str
    loaded: list[str]


Reply = Ready | ProgressEvent | PreviewEvent | LogLine | Done | Failed


def _encode_custom(obj: Any) -> Any:
    if isinstance(obj, Image.Image):
        return (obj.mode, obj.width, obj.height, obj.tobytes())
    raise NotImplementedError(f"cannot send {type(obj).__name__} to the engine worker")


def _decode_custom(kind: type, obj: Any) -> Any:
    if kind is Image.Image:
        mode, width, height, data = obj
        return Image.frombytes(mode, (width, height), data)
    raise NotImplementedError(f"cannot receive {kind.__name__} from the engine worker")


class Codec:
    """Encoder and decoders for both directions (one instance per side, reused)."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_encode_custom)
        self._calls = msgspec.msgpack.Decoder(Call, dec_hook=_decode_custom)
        self._replies = msgspec.msgpack.Decoder(Reply, dec_hook=_decode_custom)

    def frame(self, message: Call | Reply) -> bytes:
        """One framed message, ready to write."""
        body = self._encoder.encode(message)
        return HEADER.pack(len(body)) + body

    def call(self, body: bytes) -> Call:
        """Decode a frame body sent by the server."""
        return self._calls.decode(body)

    def reply(self, body: bytes) -> Reply:
        """Decode a frame body sent by the worker."""
        return self._replies.decode(body)


def failure(exc: BaseException, loaded: list[str]) -> Failed:
    """A worker-side exception as a message; unexpected ones become a plain engine error."""
    if isinstance(exc, errors.SdrestError):
        return Failed(type(exc).__name__, exc.message, loaded)
    return Failed("EngineError", f"engine worker error: {type(exc).__name__}: {exc}", loaded)


def raise_failure(message: Failed) -> None:
    """Raise the server-side error a ``Failed`` message stands for."""
    kind = getattr(errors, message.error, None)
    if not (isinstance(kind, type) and issubclass(kind, errors.SdrestError)):
        kind = errors.EngineError
    raise kind(message.message)
