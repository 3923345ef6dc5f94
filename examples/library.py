"""Generate images from Python with ``sdrest.Generator``: no HTTP server, the engine in its worker
process (a native crash raises an exception here instead of killing the program).

python examples/library.py --models-dir models --out cat.png
"""

from __future__ import annotations

import argparse
import logging

import sdrest  # before numpy, if your app uses it (see the README's GPU notes)

logger = logging.getLogger("example")


def main(args: argparse.Namespace) -> int:
    """Generate one image, save it with its infotext, then make a variation of it."""
    with sdrest.Generator(models_dir=args.models_dir, data_dir=args.data_dir or None) as sd:
        images = sd.txt2img(
            "a lovely cat",
            width=args.size,
            height=args.size,
            steps=args.steps,
            seed=42,
            progress=lambda step, steps, phase: logger.info("%s %d/%d", phase, step, steps),
        )
        sdrest.save_image(images[0], args.out)  # the PNG keeps its infotext
        info = sdrest.image_info(images[0])
        logger.info("wrote %s (seed %d, %s steps)", args.out, info.seed, info.parameters["Steps"])
        variation = sd.img2img(
            "a lovely cat, watercolor",
            images[0],
            strength=0.5,
            width=args.size,
            height=args.size,
            steps=args.steps,
        )[0]
        logger.info("variation: seed %d", variation.info["seed"])
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--data-dir", default="", help="keep jobs and files here (default: none)")
    parser.add_argument("--out", default="cat.png")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main(parser.parse_args()))
