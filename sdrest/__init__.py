"""sdrest: stable-diffusion.cpp behind the HTTP APIs image clients already speak.

The public library API::

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
    from sdrest.schemas import ImgGenRequest, Job
    from sdrest.service import SdrestService
    from sdrest.settings import Limits, LoadOptions, Settings, load_settings

# Imported on first use: the engine worker process imports this package too, and must start fast
# without the web framework.
_EXPORTS = {
    "create_app": "sdrest.app",
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
    "ImgGenRequest",
    "Job",
    "Limits",
    "LoadOptions",
    "SdrestService",
    "Settings",
    "__version__",
    "create_app",
    "load_settings",
]
