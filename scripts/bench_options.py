"""Which load options help on this machine: each of flash attention, conv-direct, VAE tiling and
mmap on against all off, on the tiny Flux.2-klein model, through the binding directly.

Every variant is a model context of its own, all loaded at once; the rounds interleave them, so
drift on the machine hits all alike. Prints the median per variant and size, and its ratio to the
all-off baseline (below 1: faster). Run by hand: ``.venv/bin/python scripts/bench_options.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.options")

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (constructor keywords, generate_image keywords)
    "all off": ({}, {}),
    "flash_attn": ({"flash_attn": True}, {}),
    "diffusion_flash_attn": ({"diffusion_flash_attn": True}, {}),
    "diffusion_conv_direct": ({"diffusion_conv_direct": True}, {}),
    "vae_conv_direct": ({"vae_conv_direct": True}, {}),
    "vae_tiling": ({}, {"vae_tiling": True}),
    "mmap": ({"enable_mmap": True}, {}),
}


def report(
    names: list[str], sizes: list[int], times: dict[tuple[str, int], list[float]]
) -> list[str]:
    """The markdown table: the median per variant and size, and its ratio to all off."""
    lines = ["| variant | " + " | ".join(f"{s} px" for s in sizes) + " |"]
    lines.append("|---|" + "---|" * len(sizes))
    for name in names:
        cells = []
        for size in sizes:
            med = statistics.median(times[name, size])
            base = statistics.median(times["all off", size])
            cells.append(f"{med * 1000:.0f} ms ({med / base:.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


class Contexts:
    """One model context per variant, and the wall and CPU times of their runs."""

    def __init__(self, names: list[str], model: Path, threads: int, steps: int) -> None:
        import stable_diffusion_cpp  # noqa: TID251  the binding itself is what is measured

        self.steps = steps
        self.contexts: dict[str, Any] = {}
        self.loads: dict[str, float] = {}
        for name in names:
            started = time.perf_counter()
            self.contexts[name] = stable_diffusion_cpp.StableDiffusion(
                model_path=str(model), n_threads=threads, **VARIANTS[name][0]
            )
            self.loads[name] = time.perf_counter() - started
        logging.getLogger("stable-diffusion-cpp-python").setLevel(logging.CRITICAL)
        self.wall: dict[tuple[str, int], list[float]] = defaultdict(list)
        self.cpu: dict[tuple[str, int], list[float]] = defaultdict(list)

    def run(self, name: str, size: int, *, record: bool = True) -> None:
        """One generation of ``size`` px with variant ``name`` (a warm-up unless ``record``)."""
        started, cpu_started = time.perf_counter(), time.process_time()
        self.contexts[name].generate_image(
            prompt="a lovely cat", width=size, height=size, seed=42, sample_steps=self.steps,
            sample_method="euler", cfg_scale=1.0, progress_callback=lambda *_: None,
            **VARIANTS[name][1],
        )  # fmt: skip
        if record:
            self.cpu[name, size].append(time.process_time() - cpu_started)
            self.wall[name, size].append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated variant names")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import sdrest.engine.native as native  # the library before numpy (see tests/conftest.py)
    from sdrest.testing import build_models_dir

    logging.getLogger("sdrest.native").setLevel(logging.WARNING)
    models = build_models_dir(Path(tempfile.mkdtemp(prefix="sdrest-options-")) / "models")
    threads = native.physical_cores()
    wanted = args.only.split(",") if args.only else list(VARIANTS)
    names = ["all off"] + [n for n in VARIANTS if n != "all off" and n in wanted]
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = Contexts(names, models.checkpoint, threads, args.steps)
    for size in sizes:  # warm-up: the first run of a size allocates its buffers
        for name in names:
            runs.run(name, size, record=False)
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            for size in sizes:
                runs.run(name, size)
    loads = ", ".join(f"{n} {t:.2f} s" for n, t in runs.loads.items())
    logger.info("%d threads, %d steps, %d rounds; load %s", threads, args.steps, args.rounds, loads)
    logger.info("wall time (ratio to all off):")
    for line in report(names, sizes, runs.wall):
        logger.info("%s", line)
    logger.info("CPU time of the process, user + system (less disturbed by other load):")
    for line in report(names, sizes, runs.cpu):
        logger.info("%s", line)
    logger.info("load average %s", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
