"""``sdrest.Generator`` and ``AsyncGenerator`` as a notebook uses them: in a process of their
own, called from inside a running event loop, on the real library and the tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sdrest.testing import TinyModelSet

pytestmark = pytest.mark.native

# Called from inside asyncio.run(): the sync methods must not touch the caller's loop.
SYNC_SCRIPT = """
import asyncio, json, os, sys
import sdrest
from PIL import Image

MODELS, DATA = sys.argv[1], sys.argv[2]
out = {}

async def main():
    loop = asyncio.get_running_loop()
    quick = dict(width=64, height=64, steps=2, cfg_scale=1.0, sampler="euler")
    with sdrest.Generator(
        models_dir=MODELS, model="tiny-flux2", threads=2, data_dir=DATA, lora_shape_check=False
    ) as sd:
        seen = []
        images = sd.txt2img(
            "a lovely cat", seed=42, batch_count=2,
            progress=lambda step, steps, phase: seen.append([step, steps, phase]), **quick
        )
        out["in_loop"] = asyncio.get_running_loop() is loop
        out["progress"] = seen
        out["seeds"] = [image.info["seed"] for image in images]
        out["sizes"] = [list(image.size) for image in images]
        info = sdrest.image_info(images[1])
        out["info"] = {"seed": info.seed, "prompt": info.prompt, "params": info.parameters,
                       "path_exists": info.path.is_file(), "infotext": images[1].info["parameters"]}
        again = sd.txt2img("a lovely cat", seed=42, **quick)[0]
        out["same_seed_same_pixels"] = again.tobytes() == images[0].tobytes()
        saved = sdrest.save_image(images[0], os.path.join(DATA, "saved.png"))
        out["saved_info"] = sdrest.image_info(Image.open(saved)).seed
        base = images[0].convert("RGB")
        mask = Image.new("L", base.size, 0)
        mask.paste(255, (16, 16, 48, 48))
        edited = sd.img2img("a dog", base, strength=0.4, seed=3, **quick)[0]
        painted = sd.inpaint("a dog", base, mask, strength=0.4, seed=3, **quick)[0]
        text = edited.info["parameters"]
        out["img2img"] = [edited.info["seed"], "Denoising strength: 0.4" in text]
        out["inpaint_uses_mask"] = painted.tobytes() != edited.tobytes()
        out["upscaled"] = list(sd.upscale(base, upscaler="tiny-esrgan-x2").size)

        def cancel_at_step_one(step, steps, phase):
            if phase == "sampling" and step >= 1:
                sd.cancel()
        try:
            sd.txt2img("slow", width=256, height=256, steps=30, progress=cancel_at_step_one)
            out["cancel"] = "not raised"
        except sdrest.GenerationCancelledError as exc:
            out["cancel"] = exc.code
        try:
            sd.txt2img("crash", loras={"wrong-shape": 1.0}, **quick)
            out["crash"] = "not raised"
        except sdrest.JobFailedError as exc:
            out["crash"] = [exc.code, "SIGABRT" in exc.message]
        out["after_crash_seed"] = sd.txt2img("after", seed=7, **quick)[0].info["seed"]
        try:
            sd.txt2img("x", steps=100000)
            out["bad_input"] = "not raised"
        except sdrest.SdrestError as exc:
            out["bad_input"] = exc.code
    out["temp_kept"] = os.path.isdir(DATA)
    print(json.dumps(out))

asyncio.run(main())
"""

ASYNC_SCRIPT = """
import asyncio, json, sys, time
import sdrest

MODELS = sys.argv[1]
out = {}

async def main():
    ticks = []
    async def heartbeat():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)
    beat = asyncio.create_task(heartbeat())
    quick = dict(width=64, height=64, steps=2, cfg_scale=1.0, sampler="euler")
    async with sdrest.AsyncGenerator(models_dir=MODELS, model="tiny-flux2", threads=2) as sd:
        data_dir = sd.settings.data_dir
        steps = []
        images = await sd.txt2img(
            "a lovely cat", seed=11, progress=lambda s, n, p: steps.append([s, n, p]), **quick
        )
        out["seed"] = images[0].info["seed"]
        out["params_seed"] = sdrest.image_info(images[0]).parameters["Seed"]
        out["progress"] = steps
        before = len(ticks)
        started = asyncio.Event()
        def on_step(step, steps, phase):
            if phase == "sampling" and step >= 1:
                started.set()
        task = asyncio.create_task(
            sd.txt2img("slow", width=256, height=256, steps=30, progress=on_step)
        )
        await asyncio.wait_for(started.wait(), 120)
        await asyncio.sleep(0.2)
        out["ticks_while_generating"] = len(ticks) - before
        task.cancel()
        try:
            await task
            out["task"] = "finished"
        except asyncio.CancelledError:
            out["task"] = "cancelled"
        jobs = await sd.service.list_jobs(limit=1)
        out["stopped_job"] = [jobs[0].status, jobs[0].error.code if jobs[0].error else None]
        other = asyncio.create_task(sd.txt2img("slow", width=256, height=256, steps=30))
        while not sd.service.queue_snapshot().current:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        await sd.cancel()
        try:
            await other
            out["cancel"] = "not raised"
        except sdrest.GenerationCancelledError as exc:
            out["cancel"] = exc.code
        out["after"] = (await sd.txt2img("after", seed=5, **quick))[0].info["seed"]
    beat.cancel()
    import os
    out["temp_removed"] = not os.path.exists(data_dir)
    print(json.dumps(out))

asyncio.run(main())
"""


def run_script(source: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def sampling_steps(progress: list[list[Any]]) -> list[int]:
    return [step for step, _steps, phase in progress if phase == "sampling"]


def test_sync_generator_inside_a_running_loop(tiny_models: TinyModelSet, tmp_path: Path) -> None:
    out = run_script(SYNC_SCRIPT, str(tiny_models.root), str(tmp_path / "data"))
    assert out["in_loop"] is True
    assert out["seeds"] == [42, 43] and out["sizes"] == [[64, 64], [64, 64]]
    steps = sampling_steps(out["progress"])
    assert steps[:3] == [0, 1, 2] and steps == [0, 1, 2, 0, 1, 2]  # one pass per image
    assert out["progress"][0][2] == "loading"
    info = out["info"]
    assert info["seed"] == 43 and info["prompt"] == "a lovely cat" and info["path_exists"]
    assert info["params"]["Seed"] == "43" and info["params"]["Steps"] == "2"
    assert info["params"]["Model"] == "tiny-flux2" and info["params"]["Size"] == "64x64"
    assert info["infotext"].startswith("a lovely cat\nSteps: 2, Sampler: Euler,")
    assert out["same_seed_same_pixels"] is True
    assert out["saved_info"] == 42
    assert out["img2img"] == [3, True]
    assert out["inpaint_uses_mask"] is True
    assert out["upscaled"] == [128, 128]
    assert out["cancel"] in ("cancelled", "interrupted")
    assert out["crash"] == ["engine_crashed", True]
    assert out["after_crash_seed"] == 7
    assert out["bad_input"] == "invalid_request"
    assert out["temp_kept"] is True  # data_dir given: the caller's folder stays


def test_async_generator_cancels_by_task_and_by_cancel(tiny_models: TinyModelSet) -> None:
    out = run_script(ASYNC_SCRIPT, str(tiny_models.root))
    assert out["seed"] == 11 and out["params_seed"] == "11"
    assert sampling_steps(out["progress"]) == [0, 1, 2]
    assert out["ticks_while_generating"] > 10  # the caller's loop ran during the generation
    assert out["task"] == "cancelled"
    assert out["stopped_job"] == ["cancelled", "interrupted"]
    assert out["cancel"] in ("cancelled", "interrupted")
    assert out["after"] == 5
    assert out["temp_removed"] is True
