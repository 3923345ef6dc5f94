"""Side-by-side benchmark on a synthesized tiny model, all measured in one run.

Prints: HTTP end-to-end (POST /sdcpp/v1/img_gen + polling) vs the direct library call for the same
request (median of several, as a ratio), the same through a second server with the engine
in-process (what the worker process costs), the server's time from start to healthy, its RSS
(server + worker) before and after the model is loaded, and how long a cancel of a generating job
takes (the worker is killed and restarted) and what the next job then pays for the reload.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_http import free_port, http_json  # scripts/ is on the path: this file runs as a script

logger = logging.getLogger("bench")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class DirectRunner:
    """The baseline: the binding called directly, no server."""

    def __init__(self, model: Path, threads: int) -> None:
        import stable_diffusion_cpp

        import sdrest.engine.native  # noqa: F401  routes native logs into logging, quietly

        logging.getLogger("sdrest.native").setLevel(logging.WARNING)
        self.sd = stable_diffusion_cpp.StableDiffusion(model_path=str(model), n_threads=threads)
        logging.getLogger("stable-diffusion-cpp-python").setLevel(logging.CRITICAL)

    def run(self, request: dict[str, Any]) -> float:
        sample = request["sample_params"]
        start = time.perf_counter()
        self.sd.generate_image(
            prompt=request["prompt"],
            width=request["width"],
            height=request["height"],
            seed=request["seed"],
            sample_steps=sample["sample_steps"],
            sample_method=sample["sample_method"],
            cfg_scale=sample["guidance"]["txt_cfg"],
            progress_callback=lambda *_: None,
        )
        return time.perf_counter() - start


def http_run(base: str, request: dict[str, Any], poll: float) -> float:
    """Submit, poll until completed (the last poll carries the images): what a client sees.
    ``poll`` 0 uses the long poll ``?wait=60``: one request that answers when the job is done."""
    start = time.perf_counter()
    job = http_json("POST", f"{base}/sdcpp/v1/img_gen", request)
    state: dict[str, Any] = job
    query = "?wait=60" if poll == 0 else ""
    deadline = start + 300
    while True:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job {job['id']} did not finish in 300 s: {state}")
        state = http_json("GET", f"{base}/sdcpp/v1/jobs/{job['id']}{query}")
        if state["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(poll)
    if state["status"] != "completed":
        raise RuntimeError(f"job failed: {state['error']}")
    return time.perf_counter() - start


def openai_run(base: str, request: dict[str, Any]) -> float:
    """One synchronous OpenAI images call (b64_json): the answer carries the image."""
    sample = request["sample_params"]
    body = {
        "prompt": request["prompt"],
        "size": f"{request['width']}x{request['height']}",
        "response_format": "b64_json",
        "seed": request["seed"],
        "steps": sample["sample_steps"],
        "sampler": sample["sample_method"],
        "cfg_scale": sample["guidance"]["txt_cfg"],
    }
    start = time.perf_counter()
    answer = http_json("POST", f"{base}/v1/images/generations", body)
    if not answer.get("data"):
        raise RuntimeError(f"no image: {answer}")
    return time.perf_counter() - start


def sdapi_run(base: str, request: dict[str, Any]) -> float:
    """One synchronous AUTOMATIC1111 txt2img call."""
    sample = request["sample_params"]
    body = {
        "prompt": request["prompt"],
        "width": request["width"],
        "height": request["height"],
        "seed": request["seed"],
        "steps": sample["sample_steps"],
        "sampler_name": sample["sample_method"],
        "cfg_scale": sample["guidance"]["txt_cfg"],
    }
    start = time.perf_counter()
    answer = http_json("POST", f"{base}/sdapi/v1/txt2img", body)
    if not answer.get("images"):
        raise RuntimeError(f"no image: {answer}")
    return time.perf_counter() - start


def _start_server(
    models: Any, work: Path, args: argparse.Namespace, mode: str
) -> tuple[subprocess.Popen[bytes], str, float]:
    """``sdrest serve`` with ``--engine-mode mode``; (process, base URL, seconds to healthy)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "SDREST_THREADS": str(args.threads),
        "SDREST_WORKER_NICE": str(args.worker_nice),
    }
    started = time.perf_counter()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sdrest",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--models-dir",
            str(models.root),
            "--data-dir",
            str(work / "data"),
            "--model",
            models.checkpoint.stem,
            "--preview",
            args.preview,
            "--engine-mode",
            mode,
        ],
        env=env,
    )
    while True:
        try:
            http_json("GET", f"{base}/api/health")
            return server, base, time.perf_counter() - started
        except OSError:
            if server.poll() is not None or time.perf_counter() - started > 60:
                server.kill()
                raise RuntimeError("server did not become healthy") from None
            time.sleep(0.01)


def _worker_pid(base: str) -> int:
    return int(http_json("GET", f"{base}/api/system")["system"]["engine"]["worker_pid"])


def cancel_run(base: str, request: dict[str, Any]) -> tuple[float, float]:
    """Cancel a long job once it samples: (seconds until the cancel answered with the job
    cancelled, seconds the next job then takes, model reload in a new worker included)."""
    slow = {**request, "sample_params": {**request["sample_params"], "sample_steps": 150}}
    job = http_json("POST", f"{base}/sdcpp/v1/img_gen", slow)
    while http_json("GET", f"{base}/sdcpp/v1/jobs/{job['id']}")["progress"]["step"] < 1:
        time.sleep(0.02)
    start = time.perf_counter()
    state = http_json("POST", f"{base}/sdcpp/v1/jobs/{job['id']}/cancel")
    cancel = time.perf_counter() - start
    if state["status"] != "cancelled":
        raise RuntimeError(f"cancel did not stop the job: {state}")
    return cancel, http_run(base, request, 0)


def poll_during_generation(
    base: str, request: dict[str, Any], steps: int, interval: float = 0.01
) -> tuple[float, float, float, int]:
    """Poll a job's status every ``interval`` while it generates (``steps`` steps): (p50 and p99
    of the poll's latency in ms, the generation's wall time in s, the number of polls). What a
    UI's progress bar feels while the engine keeps every core busy."""
    slow = {**request, "sample_params": {**request["sample_params"], "sample_steps": steps}}
    start = time.perf_counter()
    job = http_json("POST", f"{base}/sdcpp/v1/img_gen", slow)
    latencies = []
    while True:
        sent = time.perf_counter()
        state = http_json("GET", f"{base}/sdcpp/v1/jobs/{job['id']}")
        latencies.append((time.perf_counter() - sent) * 1000)
        if state["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(interval)
    generation = time.perf_counter() - start
    if state["status"] != "completed":
        raise RuntimeError(f"job failed: {state['error']}")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return statistics.median(latencies), cuts[98], generation, len(latencies)


def _report_polls(
    args: argparse.Namespace, polled: list[tuple[float, float, float, int]]
) -> None:
    logger.info(
        "status poll during a generation (%d steps, every 10 ms, --worker-nice %d): p99 %.1f ms"
        " (goal < 10), p50 %.1f ms; generation %.3f s  (runs: %s)",
        args.poll_steps,
        args.worker_nice,
        statistics.median(p[1] for p in polled),
        statistics.median(p[0] for p in polled),
        statistics.median(p[2] for p in polled),
        ", ".join(f"p99 {p[1]:.1f} ms / {p[2]:.2f} s / {p[3]} polls" for p in polled),
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--peer",
        action="store_true",
        help="measure against stable-diffusion.cpp's own sd-server instead (built once from the"
        " binding's source distribution, cached in ~/.cache/sdrest/peer; see bench_peer.py)",
    )
    parser.add_argument(
        "--starts", type=int, default=3, help="--peer: cold starts of each server (first image)"
    )
    parser.add_argument(
        "--queue-rounds", type=int, default=3, help="--peer: rounds of the 10 queued jobs"
    )
    parser.add_argument(
        "--workers",
        action="store_true",
        help="jobs/s with 1 and 2 engine workers (--threads 1 each) and the claim-to-start"
        " latency instead (bench_workers.py)",
    )
    parser.add_argument("--jobs", type=int, default=8, help="--workers: jobs in the burst")
    parser.add_argument(
        "--database-url", default="", help="--workers: a PostgreSQL queue instead of SQLite"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per request (11; --peer 5)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.05, help="poll interval (s)")
    parser.add_argument(
        "--poll-steps", type=int, default=40, help="steps of the job polled for latency"
    )
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="the server's --worker-nice (0: no change)"
    )
    parser.add_argument(
        "--preview",
        default="none",
        help="the server's --preview (none: the same work as the direct call, so the ratio is"
        " the server's own overhead; proj: the default, with live previews)",
    )
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.peer:
        import bench_peer  # scripts/ is on the path: this file runs as a script

        return bench_peer.run(args.runs or 5, args.starts, args.queue_rounds)
    if args.workers:
        import bench_workers  # scripts/ is on the path: this file runs as a script

        return bench_workers.run(args)
    args.runs = args.runs or 11
    return _overhead(args)


def _overhead(args: argparse.Namespace) -> int:
    """The default benchmark: each family against the direct library call."""

    import sdrest.engine.native  # noqa: F401  native library before numpy (see tests/conftest.py)
    from sdrest.testing import build_models_dir

    work = Path(tempfile.mkdtemp(prefix="sdrest-bench-"))
    models = build_models_dir(work / "models")
    request = {
        "prompt": "a lovely cat",
        "width": args.size,
        "height": args.size,
        "seed": 42,
        "sample_params": {
            "sample_steps": args.steps,
            "sample_method": "euler",
            "guidance": {"txt_cfg": 1.0},
        },
    }

    server, base, to_healthy = _start_server(models, work / "worker", args, "worker")
    inproc, inproc_base, _ = _start_server(models, work / "in-process", args, "in-process")
    try:
        time.sleep(0.5)
        rss_idle = _rss_mib(server.pid)
        direct_runner = DirectRunner(models.checkpoint, args.threads)
        direct_runner.run(request)  # warm-up: first runs allocate buffers
        http_run(base, request, args.poll)
        http_run(inproc_base, request, 0)
        openai_run(base, request)
        sdapi_run(base, request)
        direct, via_http, via_wait, via_openai, via_sdapi, via_inproc = [], [], [], [], [], []
        for _ in range(args.runs):  # interleaved, so drift on the machine hits all alike
            direct.append(direct_runner.run(request))
            via_http.append(http_run(base, request, args.poll))
            via_wait.append(http_run(base, request, 0))
            via_inproc.append(http_run(inproc_base, request, 0))
            via_openai.append(openai_run(base, request))
            via_sdapi.append(sdapi_run(base, request))
        rss_loaded = _rss_mib(server.pid) + _rss_mib(_worker_pid(base))
        _report_polls(  # the server under load: polls while a generation takes every core
            args, [poll_during_generation(base, request, args.poll_steps) for _ in range(3)]
        )
        cancels, reloads = [], []
        for _ in range(3):
            cancel, reload = cancel_run(base, request)
            cancels.append(cancel)
            reloads.append(reload)
    finally:
        for process in (server, inproc):
            process.terminate()
            process.wait(timeout=30)

    med_http, med_direct = statistics.median(via_http), statistics.median(direct)
    med_wait = statistics.median(via_wait)
    logger.info(
        "model: %s (%d x %d, %d steps, %d threads, %d runs, server --preview %s)",
        models.checkpoint.name,
        args.size,
        args.size,
        args.steps,
        args.threads,
        args.runs,
        args.preview,
    )
    logger.info(
        "direct library call  median %.4f s  (%s)",
        med_direct,
        ", ".join(f"{t:.3f}" for t in direct),
    )
    logger.info(
        "HTTP img_gen + poll  median %.4f s  (%s)",
        med_http,
        ", ".join(f"{t:.3f}" for t in via_http),
    )
    logger.info(
        "HTTP img_gen + ?wait  median %.4f s  (%s)",
        med_wait,
        ", ".join(f"{t:.3f}" for t in via_wait),
    )
    logger.info(
        "ratio HTTP poll / direct  %.3f  (goal <= 1.05; poll every %.0f ms)",
        med_http / med_direct,
        args.poll * 1000,
    )
    for label, times in (("OpenAI /v1/images", via_openai), ("A1111 txt2img", via_sdapi)):
        logger.info(
            "%-20s median %.4f s  (%s)",
            label,
            statistics.median(times),
            ", ".join(f"{t:.3f}" for t in times),
        )
    logger.info("ratio HTTP wait / direct  %.3f  (goal <= 1.05; long poll)", med_wait / med_direct)
    logger.info("ratio OpenAI / direct     %.3f", statistics.median(via_openai) / med_direct)
    logger.info("ratio A1111 / direct      %.3f", statistics.median(via_sdapi) / med_direct)
    logger.info(
        "ratio worker / in-process (?wait)  %.3f  (in-process median %.4f s)",
        med_wait / statistics.median(via_inproc),
        statistics.median(via_inproc),
    )
    logger.info("start to healthy     %.3f s", to_healthy)
    logger.info(
        "RSS idle             %.1f MiB (server, no worker yet); after jobs, server + worker with"
        " the model loaded: %.1f MiB",
        rss_idle,
        rss_loaded,
    )
    logger.info(
        "cancel of a generating job: answered cancelled in median %.3f s (%s); the next job"
        " (model reloaded in a new worker) took %.3f s against %.3f s normally",
        statistics.median(cancels),
        ", ".join(f"{t:.3f}" for t in cancels),
        statistics.median(reloads),
        med_wait,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
