"""Coalescing: queued txt2img jobs that differ only in their seeds run as ONE native call.

The library generates a batch of ``n`` images from seeds ``seed, seed+1, ... seed+n-1`` and
computes the prompt's conditioning once for the whole batch; image ``i`` of a batch is the very
image a single call with seed ``seed+i`` makes (pixel for pixel, tested). So when the jobs
waiting at the head of the queue ask for the same thing with seeds that follow one another
(a client's ``seed, seed+1, ...`` loop; or one request sent several times at once with its
seed left to chance, since :meth:`JobRunner.continue_seed` then gives each the seed that
continues the last one's batch), the runner runs them as one call and hands each job its own
images. On the tiny test model the conditioning is about 40% of a 64 px image: ten such jobs
take about 0.6 of the time one by one (see README, Performance).

What coalesces, and what never does:

* only plain txt2img plans: no input image (init, mask, control, reference: those come from
  URLs or uploads that are not compared here), no hires fix, no tiled upscale;
* only jobs in the unbroken run of waiting jobs at the head of the queue: a job behind a
  different job or a model load is never moved ahead of it;
* at most :data:`MAX_IMAGES` images and :data:`MAX_WORK` pixel-steps per call: a coalesced
  job's images arrive when the whole call ends, so large images (where the shared
  conditioning is a small part anyway) run one job at a time and keep their own latency.

Each job keeps its own record, progress, previews, files and seed; the progress and previews of
the one call are routed to the job whose image is being sampled (:class:`ProgressRouter`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TypeGuard

import msgspec
from PIL import Image

from sdrest.engine.base import GenerationPlan, PreviewFn, ProgressFn
from sdrest.schemas import ImgGenRequest, Progress

MAX_IMAGES = 16
"""Images in one coalesced call at most."""
MAX_WORK = 4 * 1024 * 1024
"""Pixel-steps (width x height x steps x images) in one coalesced call at most: 16 images of
64x64 at 4 steps or 4 of 256x256 at 4 steps fit; one 512x512 at 16 steps fills it alone."""


def may_coalesce(request: ImgGenRequest | None) -> bool:
    """Whether a request could share a native call: known before it is planned (planning
    decodes its images, which a worker looking for partners should not pay for)."""
    return (
        request is not None
        and not request.has_images
        and not request.hires.enabled
        and not request.tiled_upscale.enabled
    )


def eligible(plan: object) -> TypeGuard[GenerationPlan]:
    """Whether ``plan`` may share a native call with others."""
    return (
        isinstance(plan, GenerationPlan)
        and may_coalesce(plan.request)
        and plan.init_image is None
        and plan.mask_image is None
        and plan.control_image is None
        and not plan.ref_images
    )


def _work(plan: GenerationPlan) -> int:
    request = plan.request
    return request.width * request.height * request.sample_params.sample_steps * request.batch_count


def _seedless(request: ImgGenRequest) -> ImgGenRequest:
    return msgspec.structs.replace(request, seed=0, batch_count=1)


def _call_key(plan: GenerationPlan) -> GenerationPlan:
    """``plan`` without its seed and image count: what two plans sharing a call have alike."""
    return dataclasses.replace(plan, seed=0, request=_seedless(plan.request))


def same_call(first: GenerationPlan, other: GenerationPlan) -> bool:
    """Whether ``other`` asks for what ``first`` asks for, apart from its seed and image count
    (and so can be appended to ``first``'s batch when its seed follows)."""
    return _call_key(other) == _call_key(first)


def partners(
    head: GenerationPlan, waiting: Iterable[tuple[str, GenerationPlan | None]]
) -> list[str]:
    """The waiting jobs to run in ``head``'s call, in batch order.

    ``waiting`` is the run of jobs right behind ``head`` in the queue (id, plan; None for a job
    that cannot coalesce), next first; the run ends at the first job that is not like ``head``.
    A partner's seed is where the batch so far ends; the batch stays within the limits.
    """
    key = _call_key(head)
    by_seed: dict[int, tuple[str, GenerationPlan]] = {}
    for job_id, plan in waiting:  # read lazily: the run usually ends at the first job
        if plan is None or _call_key(plan) != key:
            break
        by_seed.setdefault(plan.seed, (job_id, plan))
    chosen: list[str] = []
    images, work = head.request.batch_count, _work(head)
    next_seed = head.seed + images
    while (found := by_seed.pop(next_seed, None)) is not None:
        job_id, plan = found
        images += plan.request.batch_count
        work += _work(plan)
        if images > MAX_IMAGES or work > MAX_WORK:
            break
        chosen.append(job_id)
        next_seed += plan.request.batch_count
    return chosen


def batch_plan(plans: Sequence[GenerationPlan]) -> GenerationPlan:
    """The one call that makes every plan's images: the first plan's, with all their images."""
    first = plans[0]
    total = sum(plan.request.batch_count for plan in plans)
    return dataclasses.replace(
        first, request=msgspec.structs.replace(first.request, batch_count=total)
    )


def split(
    images: Sequence[Image.Image], plans: Sequence[GenerationPlan]
) -> list[list[Image.Image]]:
    """Each plan's share of the batch's images, in order."""
    shares: list[list[Image.Image]] = []
    start = 0
    for plan in plans:
        end = start + plan.request.batch_count
        shares.append(list(images[start:end]))
        start = end
    return shares


@dataclasses.dataclass
class Member:
    """One job of a coalesced call: its id, how many of the batch's images are its, and its
    progress and preview hooks."""

    job_id: str
    images: int
    on_progress: ProgressFn
    on_preview: PreviewFn


class ProgressRouter:
    """Routes the one call's progress and previews to the job whose image is being sampled.

    The library samples the batch's images one after another, reporting steps from 0 (or 1) up
    for each: a step that does not move forward starts the next image. What comes after the
    last image's sampling (a tiled decode's progress) goes to the last job. A model load at the
    start is every job's progress.
    """

    def __init__(self, members: Sequence[Member], on_member: Callable[[str], None]) -> None:
        self._owners = [m for m in members for _ in range(m.images)]
        self._members = members
        self._on_member = on_member
        self._image = 0
        self._last_step: int | None = None

    @property
    def current(self) -> Member:
        """The job whose image is being sampled."""
        return self._owners[min(self._image, len(self._owners) - 1)]

    def on_progress(self, progress: Progress) -> None:
        """The engine's progress callback."""
        if progress.phase != "sampling":
            for member in self._members:
                member.on_progress(progress)
            return
        if self._last_step is not None and progress.step <= self._last_step:
            self._image += 1
            self._on_member(self.current.job_id)
        self._last_step = progress.step
        self.current.on_progress(progress)

    def on_preview(self, step: int, image: Image.Image) -> None:
        """The engine's preview callback."""
        self.current.on_preview(step, image)
