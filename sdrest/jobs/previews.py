"""Live previews of running jobs: the latest image per job, and its PNG encoded once per step."""

from __future__ import annotations

import asyncio

from PIL import Image

from sdrest.images import preview_png


class PreviewCache:
    """The latest live preview of each running job (forgotten when the job ends)."""

    def __init__(self) -> None:
        self._images: dict[str, tuple[int, Image.Image]] = {}
        self._pngs: dict[str, tuple[int, bytes]] = {}
        """The latest preview encoded, per job: every poller of a step shares one encoding."""

    def put(self, job_id: str, step: int, image: Image.Image) -> None:
        """Keep ``image`` as the job's latest preview (called on the event loop)."""
        self._images[job_id] = (step, image)

    def get(self, job_id: str) -> tuple[int, Image.Image] | None:
        """(step, image) of the job's latest preview; None when there is none."""
        return self._images.get(job_id)

    def forget(self, job_id: str) -> None:
        """Drop a finished job's previews."""
        self._images.pop(job_id, None)
        self._pngs.pop(job_id, None)

    async def png(self, job_id: str, width: int, height: int) -> tuple[int, bytes] | None:
        """(step, PNG) of the latest preview scaled to the job's aspect, encoded off the event
        loop once per step; None when there is none."""
        preview = self._images.get(job_id)
        if preview is None:
            return None
        step, image = preview
        cached = self._pngs.get(job_id)
        if cached is not None and cached[0] == step:
            return cached
        data = await asyncio.to_thread(preview_png, image, width, height)
        if job_id in self._images:  # still running: keep it for the next poller
            self._pngs[job_id] = (step, data)
        return step, data
