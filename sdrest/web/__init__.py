"""The web UI served at ``/ui/``: static files, no build step, talking to the server's own APIs.

It generates through ``/api/generate/text2img``, shows the shared queue from
``/api/queue/status`` and live progress from ``/ws``; on load it re-attaches to whatever is
queued or running, so a reload or a dropped connection never loses sight of a job.
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def create_ui_app() -> StaticFiles:
    """The UI as an ASGI app (``index.html`` for ``/ui/``)."""
    return StaticFiles(directory=STATIC_DIR, html=True)
