"""sdrest: stable-diffusion.cpp behind the HTTP APIs image clients already speak.

The public library API::

    from sdrest import SdrestService, ImgGenRequest, load_settings

    async with SdrestService(load_settings({"models_dir": "models"})) as service:
        job = await service.submit(ImgGenRequest(prompt="a lovely cat"))
        job = await service.wait(job.id)

``create_app(settings_or_service)`` gives the Starlette app that ``sdrest serve`` runs.
"""

__version__ = "0.1.0"

# __version__ comes first: sdrest.app reads it while this package is still importing.
from sdrest.app import create_app
from sdrest.schemas import ImgGenRequest, Job
from sdrest.service import SdrestService
from sdrest.settings import Limits, LoadOptions, Settings, load_settings

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
