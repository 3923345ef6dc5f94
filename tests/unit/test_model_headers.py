"""Reading safetensors / GGUF / pickle headers without loading weights, and refusing bad files."""

from __future__ import annotations

import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sdrest.models import FileHeader, HeaderError, TensorInfo, read_header
from tests.unit.support import write_gguf, write_safetensors


def test_safetensors_names_shapes_dtypes_metadata(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file(
        {"a.weight": np.zeros((3, 5), np.float16), "b.bias": np.zeros(7, np.float32)},
        str(path),
        metadata={"modelspec.architecture": "test"},
    )
    header = read_header(path)
    assert header == FileHeader(
        "safetensors",
        {"a.weight": TensorInfo((3, 5), "F16"), "b.bias": TensorInfo((7,), "F32")},
        {"modelspec.architecture": "test"},
    )


def test_sft_suffix_and_hand_written_header(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "ae.sft", {"decoder.conv_in.weight": [512, 16, 3, 3]})
    header = read_header(path)
    assert header.format == "safetensors"
    assert header.tensors["decoder.conv_in.weight"].shape == (512, 16, 3, 3)


def test_gguf_kv_types_and_tensor_infos(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "m.gguf",
        {"double_blocks.0.img_attn.qkv.weight": [2, 32], "single_blocks.0.norm.scale": [32]},
        arch="flux",
        **{
            "x.name": "tiny",
            "x.count": 7,
            "x.scale": 0.5,
            "x.flag": True,
            "x.short": [1, 2, 3],
            "x.words": ["a", "bc"],
            "x.tokens": list(range(300)),
        },
    )
    header = read_header(path)
    assert header.format == "gguf"
    meta = header.metadata
    assert meta["general.architecture"] == "flux"
    assert (meta["x.name"], meta["x.count"], meta["x.scale"], meta["x.flag"]) == (
        "tiny",
        7,
        0.5,
        True,
    )
    assert meta["x.short"] == [1, 2, 3]
    assert meta["x.words"] == ["a", "bc"]
    assert meta["x.tokens"] == "<array of 300>"  # long arrays are summarised, not kept
    # GGUF stores dims fastest-first; the reader reports numpy order like safetensors.
    assert header.tensors["double_blocks.0.img_attn.qkv.weight"] == TensorInfo((2, 32), "F32")
    assert header.tensors["single_blocks.0.norm.scale"].shape == (32,)


def test_gguf_tensor_data_is_never_read(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {"big.weight": [256, 256]})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200_000])  # cut into the tensor data only
    assert read_header(path).tensors["big.weight"].shape == (256, 256)


def _gguf_prefix(version: int, tensors: int, kvs: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (_gguf_prefix(3, 2**62, 0), "implausible GGUF tensor count"),
        (_gguf_prefix(3, 0, 2**40), "implausible GGUF key/value count"),
        (_gguf_prefix(3, 0, 1) + struct.pack("<Q", 2**50), "implausible GGUF string length"),
        (
            _gguf_prefix(3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 2**40),
            "implausible GGUF array count",
        ),
        (_gguf_prefix(3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99), "type 99"),
        (_gguf_prefix(7, 0, 0), "unsupported GGUF version 7"),
        (b"GGUF\x03\x00\x00\x00garbage", "implausible GGUF tensor count"),
    ],
)
def test_hostile_gguf_headers_are_refused_fast(tmp_path: Path, body: bytes, match: str) -> None:
    path = tmp_path / "evil.gguf"
    path.write_bytes(body + b"\x00" * 64)
    started = time.perf_counter()
    with pytest.raises(HeaderError, match=match):
        read_header(path)
    assert time.perf_counter() - started < 1.0


def test_truncated_gguf_header(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {f"t{i}.weight": [32] for i in range(50)})
    data = path.read_bytes()
    assert len(data) > 2200
    path.write_bytes(data[:1800])  # inside the tensor infos (50 x ~42 bytes)
    with pytest.raises(HeaderError, match="past the end"):
        read_header(path)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (struct.pack("<Q", 2**40) + b"{}", "exceeds the 100 MB limit"),
        (struct.pack("<Q", 5000) + b"{}" + b" " * 100, "does not fit"),
        (struct.pack("<Q", 4) + b"nope", "not JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 19) + b'{"a": {"shape": 1}}', "malformed shape"),
        (b"\x01\x02", "too short"),
    ],
)
def test_bad_safetensors_headers(tmp_path: Path, body: bytes, match: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(body)
    with pytest.raises(HeaderError, match=match):
        read_header(path)


def test_truncated_safetensors_data_is_an_error(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"w": [64, 64]})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(HeaderError, match="past the end"):
        read_header(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(HeaderError, match=r"empty\.safetensors: empty file"):
        read_header(path)


def test_missing_file_is_a_header_error(tmp_path: Path) -> None:
    with pytest.raises(HeaderError, match="cannot read"):
        read_header(tmp_path / "nope.gguf")


def test_pickles_are_recognised_not_unpickled(tmp_path: Path) -> None:
    zipped = tmp_path / "model.ckpt"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(b"\x80\x02\x8a\x0alZ\xfc\x9cF\xf9 j\xa8P\x19.")
    for path in (zipped, legacy):
        header = read_header(path)
        assert header.format == "pickle" and header.tensors == {}
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a model at all")
    with pytest.raises(HeaderError, match="not a pickle"):
        read_header(garbage)


def test_bin_holding_safetensors_or_gguf_is_parsed(tmp_path: Path) -> None:
    st = write_safetensors(tmp_path / "a.bin", {"x.weight": [4]})
    assert read_header(st).format == "safetensors"
    gg = write_gguf(tmp_path / "b.bin", {"x.weight": [4]})
    assert read_header(gg).format == "gguf"
