"""``scripts/bench --peer``: sdrest against stable-diffusion.cpp's own ``sd-server``, one run.

Both servers run with their defaults on the same tiny Flux.2-klein model (synthesized, see
``sdrest/testing``), the peer built from the source the installed binding vendors (see
``peer_build.py``). Everything is interleaved (ours, then the peer, the order alternating per round)
so drift on the machine hits both alike, and every row is a median. Rows:

- ``/sdapi/v1/txt2img`` at 64, 256 and 512 px: one synchronous request after another;
- the ``/sdcpp/v1/jobs/{id}`` status poll's p99 latency while a generation runs;
- time from process start to the first image answered (the peer loads its model before it
  listens; sdrest answers health at once and preloads the default model in the background);
- 10 queued jobs end to end: sdrest given all 10 at once, the peer answering the same 10 one
  after another (it runs one generation at a time: a second request waits on its lock). The
  issue's row sends one request with seeds 100..109 (sdrest coalesces them); a second row, shown
  but not judged, gives each its own prompt (nothing coalesces: the pipelined queue alone);
- the large-image cost in ms per megapixel: what the 512 px request costs over the 256 px one,
  per extra megapixel.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_http import free_port, http_json  # scripts/ is on the path when run by scripts/bench

logger = logging.getLogger("bench.peer")

SIZES: tuple[tuple[int, int], ...] = ((64, 2), (256, 4), (512, 4))
"""(side in px, steps) of the single-request rows."""
QUEUE_JOBS = 10
QUEUE_SIZE = (64, 2)
START_SIZE = (64, 2)
POLL_STEPS = 40
POLL_SIZE = 128
_MP = 1024 * 1024


def txt2img_body(
    size: int, steps: int, seed: int = 42, prompt: str = "a lovely cat"
) -> dict[str, Any]:
    """The one A1111 request both servers get."""
    return {
        "prompt": prompt,
        "width": size,
        "height": size,
        "seed": seed,
        "steps": steps,
        "sampler_name": "euler",
        "cfg_scale": 1.0,
    }


def txt2img(
    base: str, size: int, steps: int, seed: int = 42, prompt: str = "a lovely cat"
) -> float:
    """One synchronous txt2img; seconds until the answer (with its image) is read."""
    start = time.perf_counter()
    body = txt2img_body(size, steps, seed, prompt)
    answer = http_json("POST", f"{base}/sdapi/v1/txt2img", body, timeout=300)
    if not answer.get("images"):
        raise RuntimeError(f"no image from {base}: {str(answer)[:300]}")
    return time.perf_counter() - start


@dataclass
class Server:
    """One running server (ours or the peer) and how to start it again."""

    name: str
    command: Callable[[int], list[str]]
    log_path: Path
    env: dict[str, str] | None = None
    """The process's whole environment (None: this one's)."""
    process: subprocess.Popen[bytes] | None = None
    base: str = ""

    def start(self) -> float:
        """Start; seconds from the start until the first image is answered (``START_SIZE``)."""
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(port), stdout=log, stderr=subprocess.STDOUT,
                env=self.env,
            )  # fmt: skip
        while True:
            try:
                txt2img(self.base, *START_SIZE)
                return time.perf_counter() - started
            except (OSError, urllib.error.URLError):
                if self.process.poll() is not None or time.perf_counter() - started > 120:
                    self.stop()
                    message = f"{self.name} did not answer (see {self.log_path})"
                    raise RuntimeError(message) from None
                time.sleep(0.01)

    def stop(self) -> None:
        """Terminate (kill after 30 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def poll_latencies(base: str, interval: float = 0.01) -> list[float]:
    """Poll ``/sdcpp/v1/jobs/{id}`` every ``interval`` while one generation runs; the latencies
    in ms (the same endpoint and body on both servers)."""
    body = {
        "prompt": "a lovely cat",
        "width": POLL_SIZE,
        "height": POLL_SIZE,
        "seed": 7,
        "sample_params": {
            "sample_steps": POLL_STEPS,
            "sample_method": "euler",
            "guidance": {"txt_cfg": 1.0},
        },
    }
    job = http_json("POST", f"{base}/sdcpp/v1/img_gen", body)
    latencies = []
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        state = http_json("GET", f"{base}/sdcpp/v1/jobs/{job['id']}")
        latencies.append((time.perf_counter() - sent) * 1000)
        if state["status"] in ("completed", "failed", "cancelled"):
            if state["status"] != "completed":
                raise RuntimeError(f"poll job failed on {base}: {state}")
            return latencies
        time.sleep(interval)
    raise RuntimeError(f"poll job did not finish on {base}")


def _queued_request(i: int, distinct: bool) -> tuple[int, str]:
    """(seed, prompt) of queued request ``i``: seeds 100, 101, ... (a client's seed loop), and
    with ``distinct`` a prompt of its own each (nothing then shares a native call)."""
    return 100 + i, f"a lovely cat, picture {i}" if distinct else "a lovely cat"


def queue_concurrent(base: str, jobs: int, distinct: bool = False) -> float:
    """``jobs`` txt2img requests sent at once (each its own connection); seconds until the
    last answer."""
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(
            pool.map(
                lambda i: txt2img(base, *QUEUE_SIZE, *_queued_request(i, distinct)), range(jobs)
            )
        )
    return time.perf_counter() - start


def queue_sequential(base: str, jobs: int, distinct: bool = False) -> float:
    """The same requests one after another."""
    start = time.perf_counter()
    for i in range(jobs):
        txt2img(base, *QUEUE_SIZE, *_queued_request(i, distinct))
    return time.perf_counter() - start


def p99(values: list[float]) -> float:
    """The 99th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def ms_per_megapixel(small: tuple[int, float], large: tuple[int, float]) -> float:
    """The marginal cost of pixels: (seconds at the large side - at the small side) per extra
    megapixel, in ms. ``small`` and ``large`` are (side in px, median seconds)."""
    extra_mp = (large[0] ** 2 - small[0] ** 2) / _MP
    return (large[1] - small[1]) * 1000 / extra_mp


@dataclass
class Row:
    """One line of the table: what, ours, the peer's, the unit, the goal for ours/peer."""

    label: str
    ours: float
    peer: float
    unit: str
    goal: float = 1.0

    @property
    def ratio(self) -> float:
        """ours / peer."""
        return self.ours / self.peer

    def cells(self) -> str:
        """The markdown row."""
        flag = "" if self.ratio <= self.goal else f" (goal <= {self.goal:g})"
        return (
            f"| {self.label} | {self.ours:.1f} {self.unit} | {self.peer:.1f} {self.unit} |"
            f" {self.ratio:.2f}{flag} |"
        )


def table(rows: list[Row]) -> list[str]:
    """The markdown table of the issue (request, sdrest, sd-server, ratio)."""
    return ["| request | sdrest | sd-server | ratio |", "|---|---|---|---|"] + [
        r.cells() for r in rows
    ]


def hardware() -> str:
    """CPU model, core count and load: where the numbers come from."""
    model = platform.processor() or platform.machine()
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.is_file():
        for line in with_cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return f"{model}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def _ours(models: Any, work: Path) -> Server:
    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "sdrest", "serve", "--port", str(port),
            "--log-level", "warning", "--models-dir", str(models.root),
            "--data-dir", str(work / f"data-{port}"), "--model", models.checkpoint.stem,
        ]  # fmt: skip

    # A user's environment must not change "the defaults on both sides".
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDREST_")}
    server = Server("sdrest", command, work / "sdrest.log")
    server.env = env
    return server


def _peer(binary: Path, models: Any, work: Path) -> Server:
    def command(port: int) -> list[str]:
        return [str(binary), "--model", str(models.checkpoint), "--listen-port", str(port)]

    return Server("sd-server", command, work / "sd-server.log")


def _interleaved(
    servers: list[Server], runs: int, measure: Callable[[Server], float]
) -> dict[str, list[float]]:
    """``runs`` rounds of ``measure`` on each server, the order alternating per round."""
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    for round_ in range(runs):
        for server in servers if round_ % 2 == 0 else servers[::-1]:
            times[server.name].append(measure(server))
    return times


def _medians(times: dict[str, list[float]]) -> tuple[float, float]:
    return statistics.median(times["sdrest"]), statistics.median(times["sd-server"])


def _log_runs(label: str, times: dict[str, list[float]], scale: float, unit: str) -> None:
    for name, values in times.items():
        logger.info(
            "  %-22s %-9s %s", label, name, ", ".join(f"{v * scale:.0f}{unit}" for v in values)
        )


def _first_images(servers: list[Server], starts: int) -> Row:
    """Cold starts, interleaved; the last start of each server stays up for the other rows."""
    first: dict[str, list[float]] = {s.name: [] for s in servers}
    for round_ in range(starts):
        for server in servers if round_ % 2 == 0 else servers[::-1]:
            first[server.name].append(server.start())
            if round_ < starts - 1:
                server.stop()
    _log_runs("start to first image", first, 1000, " ms")
    ours, peer = _medians(first)
    label = f"start to first image ({START_SIZE[0]} px, median of {starts})"
    return Row(label, ours * 1000, peer * 1000, "ms")


def _singles(servers: list[Server], runs: int) -> tuple[list[Row], Row]:
    """One txt2img after another at each size; the rows and the large-image cost row."""
    for size, steps in SIZES:  # warm-up: a new size allocates its buffers once
        for server in servers:
            txt2img(server.base, size, steps)
    rows: list[Row] = []
    medians: dict[int, tuple[float, float]] = {}
    for size, steps in SIZES:
        times = _interleaved(servers, runs, functools.partial(_txt2img_on, size, steps))
        _log_runs(f"txt2img {size} px", times, 1000, " ms")
        medians[size] = _medians(times)
        label = f"{size}x{size}, {steps} steps (txt2img, median of {runs})"
        rows.append(Row(label, medians[size][0] * 1000, medians[size][1] * 1000, "ms"))
    small, large = SIZES[-2][0], SIZES[-1][0]
    cost = Row(
        f"large-image cost, ms per megapixel ({small} -> {large} px)",
        ms_per_megapixel((small, medians[small][0]), (large, medians[large][0])),
        ms_per_megapixel((small, medians[small][1]), (large, medians[large][1])),
        "ms/MP",
    )
    return rows, cost


def _txt2img_on(size: int, steps: int, server: Server) -> float:
    return txt2img(server.base, size, steps)


def _polls(ours: Server, peer: Server) -> Row:
    polls: dict[str, list[float]] = {ours.name: [], peer.name: []}
    for server in (ours, peer, peer, ours):
        polls[server.name] += poll_latencies(server.base)
    label = (
        f"status poll p99 during a generation ({len(polls[ours.name])} /"
        f" {len(polls[peer.name])} polls)"
    )
    return Row(label, p99(polls[ours.name]), p99(polls[peer.name]), "ms")


def _queue(ours: Server, peer: Server, rounds: int, *, distinct: bool = False) -> Row:
    """The queue row: the issue's (one request, seeds 100..109), or with ``distinct`` prompts
    (shown, not judged: nothing coalesces, so it is the pipelined queue alone)."""
    queue: dict[str, list[float]] = {ours.name: [], peer.name: []}
    order = [(ours, queue_concurrent), (peer, queue_sequential)]
    for round_ in range(rounds):
        for server, measure in order if round_ % 2 == 0 else order[::-1]:
            queue[server.name].append(measure(server.base, QUEUE_JOBS, distinct))
    what = "queued jobs, a prompt each" if distinct else "queued jobs"
    _log_runs(f"{QUEUE_JOBS} {what}", queue, 1000, " ms")
    ours_q, peer_q = _medians(queue)
    label = (
        f"{QUEUE_JOBS} {what} end to end ({QUEUE_SIZE[0]} px, median of {rounds};"
        " the peer one after another)"
    )
    goal = math.inf if distinct else 0.95
    return Row(label, ours_q * 1000, peer_q * 1000, "ms", goal=goal)


def run(runs: int, starts: int, queue_rounds: int) -> int:
    """The whole peer benchmark; prints the table (exit status 1 when a goal is missed)."""
    import peer_build  # scripts/ is on the path when run as scripts/bench.py

    from sdrest.testing import build_models_dir

    binary = peer_build.ensure_peer()
    work = Path(tempfile.mkdtemp(prefix="sdrest-peer-bench-"))
    models = build_models_dir(work / "models")
    ours, peer = _ours(models, work), _peer(binary, models, work)
    began = time.perf_counter()
    logger.info("hardware: %s", hardware())
    logger.info("peer: %s (binding %s)", binary, peer_build.binding_version())
    try:
        first = _first_images([ours, peer], starts)
        singles, cost = _singles([ours, peer], runs)
        queues = [_queue(ours, peer, queue_rounds, distinct=d) for d in (False, True)]
        rows = [*singles, _polls(ours, peer), first, *queues, cost]
    finally:
        ours.stop()
        peer.stop()
    logger.info("")
    for line in table(rows):
        logger.info("%s", line)
    logger.info("")
    logger.info("took %.0f s; hardware after: %s", time.perf_counter() - began, hardware())
    return 0 if all(r.ratio <= r.goal for r in rows) else 1
