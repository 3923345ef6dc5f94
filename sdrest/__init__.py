"""sdrest: stable-diffusion.cpp behind the HTTP APIs image clients already speak.

Generate images::

    with sdrest.Generator(models_dir="models") as sd:
        images = sd.txt2img("a lovely cat", steps=4, seed=42)

Embed the job service (what the HTTP server runs)::

    from sdrest import SdrestService, ImgGenRequest, load_settings

    async with SdrestService(load_settings({"models_dir": "models"})) as service:
        job = await service.submit(ImgGenRequest(prompt="a lovely cat"))
        job = await service.wait(job.id)

``create_app(settings_or_service)`` gives the Starlette app that ``sdrest serve`` runs.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdrest.app import create_app
    from sdrest.errors import JobFailedError, SdrestError
    from sdrest.generation import GenerationCancelledError, ImageInfo, image_info, save_image
    from sdrest.generator import Generator
    from sdrest.generator_async import AsyncGenerator
    from sdrest.schemas import ImgGenRequest, Job
    from sdrest.service import SdrestService
    from sdrest.settings import Limits, LoadOptions, Settings, load_settings

# Imported on first use: the engine worker process imports this package too, and must start fast
# without the web framework.
_EXPORTS = {
    "create_app": "sdrest.app",
    "Generator": "sdrest.generator",
    "AsyncGenerator": "sdrest.generator_async",
    "GenerationCancelledError": "sdrest.generation",
    "ImageInfo": "sdrest.generation",
    "image_info": "sdrest.generation",
    "save_image": "sdrest.generation",
    "JobFailedError": "sdrest.errors",
    "SdrestError": "sdrest.errors",
    "ImgGenRequest": "sdrest.schemas",
    "Job": "sdrest.schemas",
    "SdrestService": "sdrest.service",
    "Limits": "sdrest.settings",
    "LoadOptions": "sdrest.settings",
    "Settings": "sdrest.settings",
    "load_settings": "sdrest.settings",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sdrest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = [
    "AsyncGenerator",
    "GenerationCancelledError",
    "Generator",
    "ImageInfo",
    "ImgGenRequest",
    "Job",
    "JobFailedError",
    "Limits",
    "LoadOptions",
    "SdrestError",
    "SdrestService",
    "Settings",
    "__version__",
    "create_app",
    "image_info",
    "load_settings",
    "save_image",
]
