"""Read tensor names, shapes and metadata from model files without loading any weights.

safetensors: an 8-byte length and a JSON header. GGUF: a binary header of key/value pairs and
tensor infos. Every count and length is bounded by the file size, so a hostile file cannot make
the reader allocate gigabytes. Pickle files (.ckpt/.pt/.pth/.bin) are never unpickled.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_GGUF_MAGIC = b"GGUF"
# GGUF value types -> struct format of the fixed-size ones.
_GGUF_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGML_TYPES = {
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
    30: "BF16",
}
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})


class HeaderError(ValueError):
    """The file is not a readable model file."""


@dataclass(frozen=True)
class TensorInfo:
    """Shape (in the file's order) and dtype name of one tensor."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class FileHeader:
    """What a model file says about itself."""

    format: str
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)


def read_header(path: Path) -> FileHeader:
    """Read a model file's header; raises :class:`HeaderError` when it cannot be parsed."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return FileHeader("pickle")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            magic = handle.read(4)
            handle.seek(0)
            if magic == _GGUF_MAGIC:
                return _read_gguf(handle, size)
            return _read_safetensors(handle, size)
    except OSError as exc:
        raise HeaderError(f"cannot read {path.name}: {exc}") from exc


def _read_safetensors(handle: BinaryIO, size: int) -> FileHeader:
    raw_len = handle.read(8)
    if len(raw_len) < 8:
        raise HeaderError("file too short for a safetensors header")
    (length,) = struct.unpack("<Q", raw_len)
    if length > MAX_SAFETENSORS_HEADER or length + 8 > size or length < 2:
        raise HeaderError(f"implausible safetensors header length {length}")
    try:
        header = json.loads(handle.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise HeaderError("safetensors header is not an object")
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise HeaderError(f"safetensors entry {name!r} is malformed")
        tensors[name] = TensorInfo(tuple(int(d) for d in info["shape"]), str(info.get("dtype", "")))
    return FileHeader("safetensors", tensors, dict(metadata) if isinstance(metadata, dict) else {})


class _GGUFReader:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle, self.size = handle, size

    def take(self, count: int) -> bytes:
        if count < 0 or self.handle.tell() + count > self.size:
            raise HeaderError("GGUF header runs past the end of the file")
        return self.handle.read(count)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def count(self) -> int:
        value = int(self.unpack("Q"))
        if value > self.size:  # every item takes at least one byte
            raise HeaderError(f"implausible GGUF count {value}")
        return value

    def string(self) -> str:
        return self.take(self.count()).decode("utf-8", errors="replace")

    def value(self, kind: int, depth: int = 0) -> object:
        if kind in _GGUF_SCALARS:
            return self.unpack(_GGUF_SCALARS[kind])
        if kind == _GGUF_STRING:
            return self.string()
        if kind == _GGUF_ARRAY and depth < 2:
            item_kind = int(self.unpack("I"))
            n = self.count()
            items = [self.value(item_kind, depth + 1) for _ in range(n)]
            # Token tables can hold 150k entries: keep only a short preview of big arrays.
            return items if n <= 64 else f"<array of {n}>"
        raise HeaderError(f"unknown GGUF value type {kind}")


def _read_gguf(handle: BinaryIO, size: int) -> FileHeader:
    reader = _GGUFReader(handle, size)
    reader.take(4)
    version = int(reader.unpack("I"))
    if version not in (2, 3):
        raise HeaderError(f"unsupported GGUF version {version}")
    tensor_count, kv_count = reader.count(), reader.count()
    metadata: dict[str, object] = {}
    for _ in range(kv_count):
        key = reader.string()
        metadata[key] = reader.value(int(reader.unpack("I")))
    tensors = {}
    for _ in range(tensor_count):
        name = reader.string()
        ndims = int(reader.unpack("I"))
        if ndims > 8:
            raise HeaderError(f"tensor {name!r} has {ndims} dimensions")
        dims = [int(reader.unpack("Q")) for _ in range(ndims)]
        kind = int(reader.unpack("I"))
        reader.unpack("Q")  # data offset
        # GGUF stores dims fastest-first; report them in numpy/torch order like safetensors.
        tensors[name] = TensorInfo(tuple(reversed(dims)), _GGML_TYPES.get(kind, f"type{kind}"))
    return FileHeader("gguf", tensors, metadata)
