"""Queue a job through /api and follow it live on /ws until it completes, then download it.

python examples/websocket_progress.py --url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import urllib.request

from websockets.asyncio.client import connect

logger = logging.getLogger("example")


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    """POST JSON, return the JSON answer."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def download(url: str, path: str) -> None:
    """Save the file at ``url`` to ``path``."""
    with urllib.request.urlopen(url, timeout=30) as image, open(path, "wb") as out:
        out.write(image.read())


async def main(args: argparse.Namespace) -> int:
    """Queue a job, print its progress from /ws, download the image."""
    ws_url = args.url.replace("http", "ws", 1) + "/ws"
    async with connect(ws_url) as socket:
        body = {"prompt": "a lovely cat", "width": args.size, "height": args.size,
                "steps": args.steps, "seed": 42}  # fmt: skip
        # Blocking calls (a plain urllib request, a file write) run in a thread: the socket keeps
        # reading meanwhile.
        queued = await asyncio.to_thread(post, args.url + "/api/generate/text2img", body)
        job_id = queued["request_id"]
        logger.info("queued %s", job_id)
        async for raw in socket:
            message = json.loads(raw)
            data = message.get("data", {})
            if message["type"] != "job_update" or data.get("job_id") != job_id:
                continue
            logger.info("%s %s/%s", data["status"], data["current_step"], data["total_steps"])
            if data["status"] == "completed":
                await asyncio.to_thread(download, args.url + data["outputs"][0], args.out)
                logger.info("wrote %s", args.out)
                return 0
            if data["status"] in ("failed", "cancelled"):
                logger.error("job %s: %s", data["status"], data.get("error"))
                return 1
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--out", default="ws.png")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
