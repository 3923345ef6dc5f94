"""The tiny model builder: deterministic files with the names and dtypes the library loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdrest.models import detect, read_header
from sdrest.testing import (
    build_models_dir,
    write_esrgan,
    write_flux2_klein,
    write_lora,
    write_mismatched_lora,
    write_taesd,
)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = write_flux2_klein(tmp_path / "a.safetensors", variant="decoder_only", quant="f16")
    b = write_flux2_klein(tmp_path / "b.safetensors", variant="decoder_only", quant="f16")
    c = write_flux2_klein(tmp_path / "c.safetensors", variant="decoder_only", quant="f16", seed=1)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_dtype_rules_and_detection(tmp_path: Path) -> None:
    header = read_header(write_flux2_klein(tmp_path / "m.gguf", variant="decoder_only"))
    dtypes = {name: info.dtype for name, info in header.tensors.items()}
    assert dtypes["model.diffusion_model.img_in.weight"] == "Q4_0"  # 2-D, last dim % 32 == 0
    assert dtypes["model.diffusion_model.txt_in.weight"] == "Q4_0"
    assert all(dtypes[n] == "F32" for n, i in header.tensors.items() if len(i.shape) == 1)
    assert all(dtypes[n] == "F16" for n, i in header.tensors.items() if len(i.shape) == 4)
    found = detect(header)
    assert (found.architecture, found.role) == ("flux2", "checkpoint")
    assert detect(read_header(write_taesd(tmp_path / "t.safetensors"))).role == "taesd"
    assert detect(read_header(write_lora(tmp_path / "l.safetensors"))).role == "lora"


def test_identity_esrgan_weights(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    tensors = load_file(str(write_esrgan(tmp_path / "e.safetensors", scale=4)))
    first = tensors["conv_first.weight"]
    assert first.shape == (64, 3, 3, 3)
    assert [first[c, c, 1, 1] for c in range(3)] == [1, 1, 1]
    assert float(np.abs(first).sum()) == 3.0
    assert float(np.abs(tensors["conv_body.weight"]).sum()) == 0.0
    assert "conv_up2.weight" in tensors  # 4x
    assert "conv_up2.weight" not in load_file(str(write_esrgan(tmp_path / "e2.safetensors")))


def test_mismatched_lora_does_not_fit(tmp_path: Path) -> None:
    from sdrest.models.compat import lora_mismatch

    model = read_header(write_flux2_klein(tmp_path / "m.gguf", variant="decoder_only"))
    good = read_header(write_lora(tmp_path / "good.safetensors"))
    bad = read_header(write_mismatched_lora(tmp_path / "bad.safetensors"))
    assert lora_mismatch(model, good) is None
    assert lora_mismatch(model, bad) is not None


def test_build_models_dir_is_idempotent(tmp_path: Path) -> None:
    first = build_models_dir(tmp_path / "models")
    stamp = first.checkpoint.stat().st_mtime_ns
    again = build_models_dir(tmp_path / "models")
    assert again == first and again.checkpoint.stat().st_mtime_ns == stamp
    assert not list((tmp_path / "models").rglob(".*partial*"))


def test_bad_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.gguf or \.safetensors"):
        write_flux2_klein(tmp_path / "m.bin")
