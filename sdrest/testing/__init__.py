"""Test utilities: tiny synthesized model files the real native library runs (needs the ``test``
extra). Used by the test suite and ``scripts/bench``; handy for testing an embedding app too."""

from sdrest.testing.tiny_models import (
    TinyModelSet,
    build_models_dir,
    write_esrgan,
    write_flux2_klein,
    write_flux2_vae,
    write_garbage_model,
    write_lora,
    write_mismatched_lora,
    write_taesd,
    write_truncated_model,
)

__all__ = [
    "TinyModelSet",
    "build_models_dir",
    "write_esrgan",
    "write_flux2_klein",
    "write_flux2_vae",
    "write_garbage_model",
    "write_lora",
    "write_mismatched_lora",
    "write_taesd",
    "write_truncated_model",
]
