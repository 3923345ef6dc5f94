"""One job, several engine calls: AUTOMATIC1111's inpainting paste-back and its SD upscale.

:func:`generate` is what :mod:`sdrest.jobs.execute` calls for every generation plan. A plain plan
is one engine call. A plan whose request asks for inpaint options (``request.inpaint``) or the
tiled upscale (``request.tiled_upscale``) runs here as one job: it stays one entry in the queue,
its progress counts every call's steps, and a stop ends it between (or during) calls. The image
arithmetic itself is :mod:`sdrest.img2img_ops`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import msgspec
from PIL import Image, ImageFilter

from sdrest import img2img_ops as ops
from sdrest.engine.base import Engine, GenerationPlan, PreviewFn, ProgressFn, UpscalePlan
from sdrest.schemas import Progress

LANCZOS = Image.Resampling.LANCZOS


async def generate(
    engine: Engine,
    plan: GenerationPlan,
    on_progress: ProgressFn,
    on_preview: PreviewFn,
    stopped: Callable[[], bool] = lambda: False,
) -> list[Image.Image]:
    """The images of ``plan``: one engine call, or the composite its request asks for
    (``stopped`` is asked between calls; a stopped composite returns what it has)."""
    request = plan.request
    if request.tiled_upscale.enabled:
        return await _tiled_upscale(engine, plan, on_progress, on_preview, stopped)
    inpaint = request.inpaint
    if plan.mask_image is not None and (
        inpaint.paste_back or inpaint.full_res or inpaint.fill != "original" or inpaint.mask_blur
    ):
        return await _inpaint(engine, plan, on_progress, on_preview)
    return await engine.generate(plan, on_progress, on_preview)


# -- inpainting ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _InpaintInputs:
    """What the engine is given for an inpainting, and what the paste-back needs after."""

    original: Image.Image
    mask: Image.Image
    box: ops.Box | None
    """The generated area when only the mask's box is generated (full resolution)."""
    init: Image.Image
    gen_mask: Image.Image


def _inpaint_inputs(plan: GenerationPlan) -> _InpaintInputs:
    assert plan.init_image is not None and plan.mask_image is not None  # generate() checked
    request = plan.request
    inpaint = request.inpaint
    original = plan.init_image.convert("RGB")
    mask = plan.mask_image.convert("L")
    if mask.size != original.size:
        mask = mask.resize(original.size, LANCZOS)
    if inpaint.mask_blur:
        mask = mask.filter(ImageFilter.GaussianBlur(inpaint.mask_blur))
    box = ops.mask_box(mask, inpaint.full_res_padding) if inpaint.full_res else None
    init, gen_mask = original, mask
    if box is not None:
        box = ops.fit_aspect(box, request.width, request.height, *original.size)
        size = (request.width, request.height)
        init, gen_mask = original.crop(box).resize(size, LANCZOS), mask.crop(box).resize(size)
    if inpaint.fill == "fill":
        init = ops.fill_masked(init, gen_mask)
    return _InpaintInputs(original, mask, box, init, gen_mask)


def _paste(image: Image.Image, inputs: _InpaintInputs, paste_back: bool) -> Image.Image:
    box = inputs.box
    if box is not None:  # the generated crop back into the full picture
        canvas = inputs.original.copy()
        patch = image.convert("RGB").resize((box[2] - box[0], box[3] - box[1]), LANCZOS)
        canvas.paste(patch, box[:2])
        image = canvas
    if paste_back:
        overlay = ops.overlay_mask(inputs.mask, doubled=box is None)
        image = ops.paste_back(image, inputs.original, overlay)
    return image


async def _inpaint(
    engine: Engine, plan: GenerationPlan, on_progress: ProgressFn, on_preview: PreviewFn
) -> list[Image.Image]:
    # Crops, blurs and composites are CPU work: off the event loop.
    inputs = await asyncio.to_thread(_inpaint_inputs, plan)
    sub_plan = dataclasses.replace(plan, init_image=inputs.init, mask_image=inputs.gen_mask)
    images = await engine.generate(sub_plan, on_progress, on_preview)
    paste_back = plan.request.inpaint.paste_back
    if not paste_back and inputs.box is None:
        return images
    return await asyncio.to_thread(lambda: [_paste(img, inputs, paste_back) for img in images])


# -- SD upscale ----------------------------------------------------------------------------------


async def _upscale(
    engine: Engine, plan: GenerationPlan, image: Image.Image, on_progress: ProgressFn
) -> Image.Image:
    """The init image scaled by the request's factor with its upscaler (ESRGAN passes as
    needed, then an exact resize, as A1111 does)."""
    params = plan.request.tiled_upscale
    if params.upscaler == "none":
        return image
    target = ops.upscaled_size(image.width, image.height, params.scale)
    if params.upscaler == "model":
        for _ in range(ops.MAX_MODEL_PASSES):
            if image.width >= target[0] and image.height >= target[1]:
                break
            upscale_plan = UpscalePlan(plan.tile_upscaler_path, image, threads=0)
            image = (await engine.upscale(upscale_plan, on_progress)).convert("RGB")
    resample = Image.Resampling.NEAREST if params.upscaler == "nearest" else LANCZOS
    if image.size == target:
        return image
    return await asyncio.to_thread(image.resize, target, resample)


def _tile_progress(on_progress: ProgressFn, index: int, count: int) -> ProgressFn:
    """Progress of call ``index`` of ``count`` as steps of the whole job."""

    def report(progress: Progress) -> None:
        if progress.phase != "sampling" or progress.steps <= 0:
            on_progress(progress)
            return
        on_progress(
            msgspec.structs.replace(
                progress,
                step=index * progress.steps + progress.step,
                steps=count * progress.steps,
            )
        )

    return report


async def _tiled_upscale(
    engine: Engine,
    plan: GenerationPlan,
    on_progress: ProgressFn,
    on_preview: PreviewFn,
    stopped: Callable[[], bool],
) -> list[Image.Image]:
    assert plan.init_image is not None  # the request's own check
    request = plan.request
    params = request.tiled_upscale
    upscaled = await _upscale(engine, plan, plan.init_image.convert("RGB"), on_progress)
    tiles = ops.tile_grid(
        upscaled.width, upscaled.height, request.width, request.height, params.overlap
    )
    tile_request = msgspec.structs.replace(
        request, batch_count=1, tiled_upscale=msgspec.structs.replace(params, enabled=False)
    )
    calls = len(tiles) * request.batch_count
    results: list[Image.Image] = []
    for n in range(request.batch_count):
        done: list[Image.Image] = []
        for i, tile in enumerate(tiles):
            if stopped():
                return results
            crop = upscaled.crop((tile.x, tile.y, tile.x + request.width, tile.y + request.height))
            tile_plan = dataclasses.replace(
                plan, request=tile_request, seed=plan.seed + n + i, init_image=crop
            )
            report = _tile_progress(on_progress, n * len(tiles) + i, calls)
            image = (await engine.generate(tile_plan, report, on_preview))[0]
            done.append(image.convert("RGB").resize((request.width, request.height), LANCZOS))
        blended = await asyncio.to_thread(
            ops.blend_tiles, upscaled.size, tiles, done, params.overlap
        )
        results.append(blended)
    return results
