"""The web UI served at ``/ui/``: static files (plain ES modules, no build step) over the
server's own APIs.

``static/index.html`` loads ``app.js``, which starts the pages (Generate, Queue, Gallery, Models,
Users/Account, Server; one module each) and signs in when auth is on. Generation goes through
``/sdcpp/v1/img_gen`` (the canonical request: LoRAs, hires fix, masks), upscaling through
``/api/generate/upscale`` and ``/api/image/resize``, everything else through ``/api``; live
progress comes from ``/ws``. On load, and after a dropped socket, it re-reads
``/api/queue/status``, so a reload never loses sight of a job.
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

from sdrest.errors import InvalidRequestError

STATIC_DIR = Path(__file__).parent / "static"


def create_ui_app(directory: str | None = None) -> StaticFiles:
    """The UI as an ASGI app (``index.html`` for ``/ui/``): the built-in one, or the files of
    ``directory`` (``--ui-dir``, e.g. the stable-diffusion.cpp-rest web UI's build)."""
    if directory is not None and not Path(directory).is_dir():
        raise InvalidRequestError(f"--ui-dir {directory} is not a folder")
    return StaticFiles(directory=directory or STATIC_DIR, html=True)
