"""The official OpenAI SDK against sdrest: list models, generate two images, save them.

python examples/openai_client.py --url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import base64
import logging

from openai import OpenAI

logger = logging.getLogger("example")


def main(args: argparse.Namespace) -> int:
    """List the models, generate two images, write them."""
    client = OpenAI(base_url=args.url + "/v1", api_key=args.key)
    models = [m.id for m in client.models.list()]
    logger.info("models: %s", ", ".join(models))
    reply = client.images.generate(
        model=models[0],
        prompt="a lovely cat",
        n=2,
        size=f"{args.size}x{args.size}",
        response_format="b64_json",
        extra_body={"steps": args.steps, "seed": 42},  # sdrest extensions
    )
    for index, image in enumerate(reply.data or []):
        path = f"{args.prefix}{index}.png"
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(image.b64_json or ""))
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--key", default="unused", help="an sdrest API key when auth is on")
    parser.add_argument("--prefix", default="openai-")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main(parser.parse_args()))
