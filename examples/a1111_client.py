"""The `webuiapi` AUTOMATIC1111 client against sdrest: txt2img, then a 2x ESRGAN upscale when the
server has an upscaler.

    python examples/a1111_client.py --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import argparse
import logging

import webuiapi  # type: ignore[import-untyped]  # the package ships no type information

logger = logging.getLogger("example")


def main(args: argparse.Namespace) -> int:
    """Generate, save, upscale with the first ESRGAN model the server lists."""
    api = webuiapi.WebUIApi(host=args.host, port=args.port, sampler="Euler", steps=args.steps)
    result = api.txt2img(prompt="a lighthouse at dusk", width=args.size, height=args.size, seed=7)
    result.image.save(args.out)
    logger.info("wrote %s (seed %s)", args.out, result.info["seed"])
    builtin = ("None", "Lanczos", "Nearest")
    upscalers = [u["name"] for u in api.get_upscalers() if u["name"] not in builtin]
    if upscalers:
        big = api.extra_single_image(
            image=result.image, upscaler_1=upscalers[0], upscaling_resize=2
        )
        big.image.save("upscaled-" + args.out)
        logger.info("upscaled with %s to %s", upscalers[0], big.image.size)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--out", default="a1111.png")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main(parser.parse_args()))
