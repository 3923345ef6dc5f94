"""Read tensor names, shapes and metadata from model files without loading any weights.

safetensors: an 8-byte little-endian length and a JSON header. GGUF (v2/v3): a binary header of
key/value pairs and tensor infos, parsed here with :mod:`struct` (the ``gguf`` package is not a
runtime dependency). Every count and length is bounded by the file size, so a hostile file cannot
make the reader allocate gigabytes; tensor data is never read. Pickle files (.ckpt/.pt/.pth/.bin)
are never unpickled: they are recognised by their first bytes and reported with no tensors.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
"""A safetensors header longer than this is refused (real ones are well under 10 MB)."""
MAX_TENSOR_DIMS = 8
MAX_ARRAY_PREVIEW = 64
"""GGUF arrays longer than this (token tables: 150k entries) are summarised, not kept."""
MAX_ARRAY_DEPTH = 4

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})

_GGUF_MAGIC = b"GGUF"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # PROTO opcode: every pickle written with protocol >= 2 starts with it
# GGUF value types -> struct format of the fixed-size ones.
_GGUF_SCALARS: dict[int, str] = {
    0: "B",  # uint8
    1: "b",  # int8
    2: "H",  # uint16
    3: "h",  # int16
    4: "I",  # uint32
    5: "i",  # int32
    6: "f",  # float32
    7: "?",  # bool
    10: "Q",  # uint64
    11: "q",  # int64
    12: "d",  # float64
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGML_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
}

MetadataValue = str | int | float | bool | list["MetadataValue"]


class HeaderError(ValueError):
    """The file is not a readable model file (the message says why)."""


@dataclass(frozen=True)
class TensorInfo:
    """Shape (numpy/torch order, slowest dimension first) and dtype name of one tensor."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class FileHeader:
    """What a model file says about itself: its format, tensors and metadata.

    ``format`` is ``safetensors``, ``gguf`` or ``pickle`` (no tensor names: never unpickled).
    """

    format: str
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


def read_header(path: Path) -> FileHeader:
    """Read a model file's header; raises :class:`HeaderError` when it cannot be parsed.

    The format is decided by the first bytes (GGUF magic, zip or pickle opcodes), then by the
    suffix; tensor data is never read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(16)
            handle.seek(0)
            if size == 0:
                raise HeaderError(f"{path.name}: empty file")
            if head[:4] == _GGUF_MAGIC:
                return _read_gguf(handle, size)
            if path.suffix.lower() in PICKLE_SUFFIXES and not _looks_like_safetensors(head):
                return _read_pickle(head)
            return _read_safetensors(handle, size)
    except OSError as exc:
        raise HeaderError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    except HeaderError as exc:
        message = str(exc)
        if message.startswith(f"{path.name}:"):
            raise
        raise HeaderError(f"{path.name}: {message}") from exc


def _looks_like_safetensors(head: bytes) -> bool:
    # A .bin can be a renamed safetensors file: a plausible length followed by '{'.
    return len(head) >= 9 and head[8:9] == b"{"


def _read_pickle(head: bytes) -> FileHeader:
    if head.startswith(_ZIP_MAGIC):
        return FileHeader("pickle", metadata={"container": "zip"})
    if head and head[0] == _PICKLE_PROTO:
        return FileHeader("pickle", metadata={"container": "pickle"})
    raise HeaderError("not a pickle, zip, safetensors or GGUF file")


def _read_safetensors(handle: BinaryIO, size: int) -> FileHeader:
    raw_len = handle.read(8)
    if len(raw_len) < 8:
        raise HeaderError("file too short for a safetensors header")
    (length,) = struct.unpack("<Q", raw_len)
    if length > MAX_SAFETENSORS_HEADER:
        raise HeaderError(f"safetensors header length {length} exceeds the 100 MB limit")
    if length < 2 or length + 8 > size:
        raise HeaderError(f"safetensors header length {length} does not fit a {size}-byte file")
    raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise HeaderError("safetensors header is not a JSON object")
    raw_meta = header.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict):
        raise HeaderError("safetensors __metadata__ is not an object")
    metadata: dict[str, MetadataValue] = {str(k): str(v) for k, v in raw_meta.items()}
    data_size = size - 8 - length
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        tensors[name] = _safetensors_tensor(name, info, data_size)
    return FileHeader("safetensors", tensors, metadata)


def _safetensors_tensor(name: str, info: object, data_size: int) -> TensorInfo:
    if not isinstance(info, dict):
        raise HeaderError(f"safetensors entry {name!r} is not an object")
    shape, dtype, offsets = info.get("shape"), info.get("dtype"), info.get("data_offsets")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_TENSOR_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise HeaderError(f"safetensors entry {name!r} has a malformed shape")
    if not isinstance(dtype, str):
        raise HeaderError(f"safetensors entry {name!r} has no dtype")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        # The data section is shorter than the header claims: a truncated download.
        raise HeaderError(f"safetensors entry {name!r} points past the end of the file")
    return TensorInfo(tuple(shape), dtype)


class _GGUFReader:
    """Bounded reads from a GGUF header: nothing can ask for more bytes than the file holds."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle, self.size = handle, size

    def take(self, count: int) -> bytes:
        if count < 0 or self.handle.tell() + count > self.size:
            raise HeaderError("GGUF header runs past the end of the file (truncated?)")
        return self.handle.read(count)

    def scalar(self, fmt: str) -> int | float | bool:
        value: int | float | bool = struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def u32(self) -> int:
        return int(self.scalar("I"))

    def count(self, what: str, min_item_size: int = 1) -> int:
        value = int(self.scalar("Q"))
        left = self.size - self.handle.tell()
        if value * max(min_item_size, 1) > left:  # each item needs at least this many bytes
            raise HeaderError(f"implausible GGUF {what} count {value}")
        return value

    def string(self) -> str:
        return self.take(self.count("string length")).decode("utf-8", errors="replace")

    def value(self, kind: int, depth: int = 0) -> MetadataValue:
        if kind in _GGUF_SCALARS:
            return self.scalar(_GGUF_SCALARS[kind])
        if kind == _GGUF_STRING:
            return self.string()
        if kind == _GGUF_ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise HeaderError("GGUF arrays nested too deeply")
            item_kind = self.u32()
            item_size = struct.calcsize(_GGUF_SCALARS.get(item_kind, "Q"))
            n = self.count("array", item_size)
            items: list[MetadataValue] = []
            for i in range(n):
                if item_kind in _GGUF_SCALARS and i >= MAX_ARRAY_PREVIEW:
                    self.take((n - i) * item_size)  # skip the rest without decoding it
                    break
                item = self.value(item_kind, depth + 1)
                if i < MAX_ARRAY_PREVIEW:
                    items.append(item)
            return items if n <= MAX_ARRAY_PREVIEW else f"<array of {n}>"
        raise HeaderError(f"unknown GGUF value type {kind}")


def _read_gguf(handle: BinaryIO, size: int) -> FileHeader:
    reader = _GGUFReader(handle, size)
    reader.take(4)
    version = reader.u32()
    if version not in (2, 3):
        raise HeaderError(f"unsupported GGUF version {version}")
    # A tensor info needs >= 24 bytes (name length, ndims, type, offset); a kv pair >= 12.
    tensor_count = reader.count("tensor", 24)
    kv_count = reader.count("key/value", 12)
    metadata: dict[str, MetadataValue] = {}
    for _ in range(kv_count):
        key = reader.string()
        metadata[key] = reader.value(reader.u32())
    tensors: dict[str, TensorInfo] = {}
    for _ in range(tensor_count):
        name = reader.string()
        ndims = reader.u32()
        if ndims > MAX_TENSOR_DIMS:
            raise HeaderError(f"GGUF tensor {name!r} has {ndims} dimensions")
        dims = [int(reader.scalar("Q")) for _ in range(ndims)]
        kind = reader.u32()
        reader.scalar("Q")  # data offset: the data itself is never read
        # GGUF stores dims fastest-first; report them in numpy/torch order like safetensors.
        tensors[name] = TensorInfo(tuple(reversed(dims)), _GGML_TYPES.get(kind, f"type{kind}"))
    return FileHeader("gguf", tensors, metadata)
