"""Soak test, run by hand (not in CI): minutes of mixed load on every family, auth on, RSS watched.

Starts ``sdrest serve --auth-mode api-key`` on a synthesized tiny model, with an admin account and
an API key made by the CLI, and keeps ``--clients`` threads busy for ``--minutes`` with a mix of:
sdcpp img_gen + polls, OpenAI generations and edits, A1111 txt2img, img2img and png-info, /api
text2img + polls, /api/image/resize, queue and history listings, and refused requests (no key, a
wrong key, bad JSON). Every ``--sample`` seconds it records the RSS of the server process (and of
the engine worker); at the end it prints the samples' summary and whether the server's RSS stayed
flat: the median of the last fifth within ``--tolerance`` (10 %) of the median of the first fifth
after warm-up. Exit status 1 when it did not, or when a request answered 5xx.

    scripts/soak --minutes 10
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench_http import free_port  # scripts/ is on the path: this file runs as a script

logger = logging.getLogger("soak")


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _png_b64(size: int = 64) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), (random.randrange(256), 90, 160)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


_TERMINAL = frozenset({"completed", "failed", "cancelled", "canceled"})


class Client:
    """One caller: JSON or multipart over urllib, with the API key; statuses counted."""

    def __init__(self, base: str, key: str, counts: Counter[str]) -> None:
        self.base, self.key, self.counts = base, key, counts

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"content-type": content_type}
        if (key if key is not None else self.key) != "":
            headers["authorization"] = f"Bearer {key if key is not None else self.key}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        self.counts[f"{status // 100}xx"] += 1
        if status >= 500:
            logger.warning("%s %s -> %d %s", method, path, status, payload[:300])
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, None

    def wait_job(self, path: str) -> None:
        for _ in range(3000):
            status, doc = self.call("GET", path)
            job = (doc or {}).get("job") or doc or {}  # /api nests the job under "job"
            if status != 200 or str(job.get("status")).lower() in _TERMINAL:
                return
            time.sleep(0.05)

    def multipart(self, path: str, fields: dict[str, str], files: dict[str, bytes]) -> None:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            parts.append(f"{head}{value}\r\n".encode())
        for name, content in files.items():
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
                f' filename="{name}.png"\r\nContent-Type: image/png\r\n\r\n'
            )
            parts.append(head.encode() + content + b"\r\n")
        raw = b"".join(parts) + f"--{boundary}--\r\n".encode()
        self.call("POST", path, raw=raw, content_type=f"multipart/form-data; boundary={boundary}")


def _sdcpp(c: Client) -> None:
    status, job = c.call(
        "POST",
        "/sdcpp/v1/img_gen",
        {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 2}},
    )
    if status == 202:
        c.wait_job(f"/sdcpp/v1/jobs/{job['id']}")
    c.call("GET", "/sdcpp/v1/jobs?limit=20")


def _openai(c: Client) -> None:
    c.call(
        "POST",
        "/v1/images/generations",
        {"prompt": "a dog", "size": "64x64", "steps": 2, "response_format": "b64_json"},
    )
    png = base64.b64decode(_png_b64())
    c.multipart("/v1/images/edits", {"prompt": "a fox", "steps": "2"}, {"image": png})
    c.call("GET", "/v1/models")


def _sdapi(c: Client) -> None:
    c.call("POST", "/sdapi/v1/txt2img", {"prompt": "a bird", "width": 64, "height": 64, "steps": 2})
    c.call(
        "POST",
        "/sdapi/v1/img2img",
        {"prompt": "a bird", "width": 64, "height": 64, "steps": 2, "init_images": [_png_b64(80)]},
    )
    c.call("POST", "/sdapi/v1/png-info", {"image": _png_b64()})
    c.call("GET", "/sdapi/v1/progress")


def _rest(c: Client) -> None:
    status, job = c.call(
        "POST",
        "/api/generate/text2img",
        {"prompt": "a horse", "width": 64, "height": 64, "steps": 2},
    )
    job_id = (job or {}).get("job_id") or (job or {}).get("id")
    if status < 300 and job_id:
        c.wait_job(f"/api/queue/job/{job_id}")
    c.call("POST", "/api/image/resize", {"image": _png_b64(128), "width": 32})
    c.call("GET", "/api/queue/status")
    c.call("GET", "/api/models")


def _refused(c: Client) -> None:
    c.call("GET", "/api/queue/status", key="")
    c.call("POST", "/v1/images/generations", {"prompt": "x"}, key="sk-wrong")
    c.call("POST", "/sdcpp/v1/img_gen", raw=b"{not json")


MIX = (_sdcpp, _openai, _sdapi, _rest, _refused)


def _start(args: argparse.Namespace, work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    from sdrest.testing import build_models_dir

    models = build_models_dir(work / "models")
    data = work / "data"
    cli = [sys.executable, "-m", "sdrest"]
    subprocess.run(
        [*cli, "users", "add", "soak", "--role", "admin", "--data-dir", str(data)],
        input=b"soak-password\n",
        check=True,
        capture_output=True,
    )
    made = subprocess.run(
        [*cli, "keys", "create", "--user", "soak", "--data-dir", str(data)],
        check=True,
        capture_output=True,
        text=True,
    )
    key = made.stdout.strip().splitlines()[-1].strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            *cli,
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--auth-mode",
            "api-key",
            "--models-dir",
            str(models.root),
            "--data-dir",
            str(data),
            "--model",
            models.checkpoint.stem,
            "--threads",
            str(args.threads),
            "--max-queue",
            "64",
        ],
        env={**os.environ},
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/health", timeout=1).read()
            return server, base, key
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("the server did not become healthy") from None
            time.sleep(0.1)


def _worker_pid(c: Client) -> int | None:
    _, system = c.call("GET", "/api/system")
    try:
        return int(system["system"]["engine"]["worker_pid"])
    except (KeyError, TypeError, ValueError):
        return None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4, help="concurrent callers")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the baseline")
    parser.add_argument("--threads", type=int, default=2, help="the engine's --threads")
    parser.add_argument("--tolerance", type=float, default=0.10)
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(tempfile.mkdtemp(prefix="sdrest-soak-"))
    server, base, key = _start(args, work)
    counts: Counter[str] = Counter()
    stop = threading.Event()
    rounds = itertools.count()

    def run(seed: int) -> None:
        client, rng = Client(base, key, counts), random.Random(seed)
        while not stop.is_set():
            rng.choice(MIX)(client)
            next(rounds)

    started = time.monotonic()
    end = started + args.minutes * 60
    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(args.clients)]
    samples: list[tuple[float, float, float]] = []  # (seconds, server MiB, worker MiB)
    try:
        for thread in workers:
            thread.start()
        probe = Client(base, key, Counter())
        while (now := time.monotonic()) < end:
            worker = _worker_pid(probe)
            samples.append(
                (now - started, _rss_mib(server.pid), _rss_mib(worker) if worker else 0.0)
            )
            logger.info(
                "%6.0f s  server %7.1f MiB  worker %7.1f MiB  requests %s",
                *samples[-1],
                dict(counts),
            )
            time.sleep(min(args.sample, max(0.0, end - time.monotonic())))
    finally:
        stop.set()
        for thread in workers:
            thread.join(timeout=300)
        server.terminate()
        server.wait(timeout=60)
    return _report(args, samples, counts, next(rounds))


def _report(
    args: argparse.Namespace,
    samples: list[tuple[float, float, float]],
    counts: Counter[str],
    rounds: int,
) -> int:
    steady = [s for s in samples if s[0] >= args.warmup] or samples
    fifth = max(1, len(steady) // 5)
    first = statistics.median(s[1] for s in steady[:fifth])
    last = statistics.median(s[1] for s in steady[-fifth:])
    peak = max(s[1] for s in steady)
    growth = (last - first) / first
    flat = abs(growth) <= args.tolerance
    logger.info(
        "soak: %.1f min, %d clients, %d rounds, requests %s",
        args.minutes,
        args.clients,
        rounds,
        dict(counts),
    )
    logger.info(
        "server RSS after %.0f s warm-up: first fifth %.1f MiB, last fifth %.1f MiB (%+.1f %%),"
        " peak %.1f MiB; worker last %.1f MiB",
        args.warmup,
        first,
        last,
        growth * 100,
        peak,
        steady[-1][2],
    )
    logger.info("RSS flat within %.0f %%: %s", args.tolerance * 100, "yes" if flat else "NO")
    return 0 if flat and not counts["5xx"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
