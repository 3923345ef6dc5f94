"""Embed sdrest as a library: generate without HTTP, then serve the same service over HTTP.

python examples/library.py --models-dir models --out cat.png
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil

import sdrest  # before numpy, if your app uses it (see the README's GPU notes)
from sdrest import ImgGenRequest, SdrestService, load_settings
from sdrest.schemas import SampleParams

logger = logging.getLogger("example")


async def main(args: argparse.Namespace) -> int:
    """Generate one image in-process and copy it to ``--out``."""
    settings = load_settings({"models_dir": args.models_dir, "data_dir": args.data_dir})
    async with SdrestService(settings) as service:
        request = ImgGenRequest(
            prompt="a lovely cat",
            width=args.size,
            height=args.size,
            seed=42,
            sample_params=SampleParams(sample_steps=args.steps),
        )
        job = await service.submit(request)
        job = await service.wait(job.id)
        if job.result is None:
            logger.error("job %s: %s", job.status, job.error)
            return 1
        shutil.copy(service.output_file(job.id, job.result.images[0].filename), args.out)
        logger.info("wrote %s (seed %d)", args.out, job.result.images[0].seed)
        # The same service can be served over HTTP inside your own app:
        app = sdrest.create_app(service)
        logger.info("an ASGI app with %d routes is ready to mount", len(app.routes))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--out", default="cat.png")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
