"""A preset: a model made of several files, with default generation parameters (TOML
``[presets.NAME]``). Here, with the other plain types, so that the settings (and the engine
worker, which reads them) need not import the model registry."""

from __future__ import annotations

from typing import Any

import msgspec


class ModelPreset(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model made of several files (registry names or paths in the models folder) + defaults."""

    name: str
    model: str | None = None
    diffusion_model: str | None = None
    vae: str | None = None
    taesd: str | None = None
    upscaler: str | None = None
    clip_l: str | None = None
    clip_g: str | None = None
    t5xxl: str | None = None
    llm: str | None = None
    clip_vision: str | None = None
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)
