"""``progress``, ``options`` and ``cmd-flags`` bodies (pure), and the family's options store.

Progress describes the caller's job whichever family submitted it: every job runs through the
one queue, so an A1111 client polling ``/progress`` sees its OpenAI or /sdcpp job too. A user sees
only their own job (:func:`callers_job`); an admin, and the open server, the current one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from sdrest.api.sdapi.options_table import PATH_OPTIONS, STOCK_OPTIONS
from sdrest.api.sdapi.responses import ProgressAnswer, ProgressState
from sdrest.auth import Principal
from sdrest.errors import InvalidRequestError
from sdrest.schemas import Job, QueueSnapshot, job_timing
from sdrest.settings import SECRET_SETTINGS, Settings, public_settings, setting_fields

MAX_OPTION_KEYS = 512
_STEP_PHASES = frozenset({"sampling", "decoding", "encoding", "done"})


def callers_job(snapshot: QueueSnapshot, principal: Principal) -> tuple[Job | None, int]:
    """(the job ``/progress`` shows and ``/interrupt`` stops, how many more wait) for
    ``principal``: an admin (the open server too) has the current job and the whole queue; a
    user their own first job in run order (running or queued) and their own other queued ones.
    Nothing tells a user about another user's jobs."""
    if principal.is_admin:
        return snapshot.current, len(snapshot.queued)
    current = [] if snapshot.current is None else [snapshot.current]
    own = [job for job in current + snapshot.queued if principal.may_see(job.owner)]
    return (own[0], len(own) - 1) if own else (None, 0)


def progress_view(
    job: Job | None,
    *,
    queued: int,
    visible: bool,
    stop_requested: bool,
    current_image: str | None = None,
    now: float | None = None,
) -> ProgressAnswer:
    """``GET /progress``: A1111's shape; ``state.job`` is the job id when the caller may see it.

    ``job`` and ``queued`` come from one queue snapshot. The arithmetic is
    :func:`~sdrest.schemas.job_timing`'s; A1111 shows sampling steps only (loading counts
    tensors, upscaling tiles: neither is shown). ``current_image`` is the latest live preview
    (base64 PNG) when there is one.
    """
    now = time.time() if now is None else now
    if job is None:
        return ProgressAnswer(0.0, 0.0, _state("", queued, 0, 0, "0", False), None, None)
    timing = job_timing(job, now)
    phase = job.progress.phase
    shown = timing.stepping and phase in _STEP_PHASES
    step, steps = (timing.step, timing.steps) if shown else (0, 0)
    fraction = timing.fraction if shown else 0.0
    eta = (timing.eta or 0.0) if shown and fraction < 1 else 0.0  # decoding: nothing left
    timestamp = time.strftime("%Y%m%d%H%M%S", time.localtime(job.started or now))
    text = f"Sampling step {step}/{steps}" if phase == "sampling" else phase.capitalize()
    state = _state(job.id if visible else "", queued + 1, step, steps, timestamp, stop_requested)
    return ProgressAnswer(round(fraction, 4), round(max(0.0, eta), 3), state, current_image, text)


def _state(
    job: str, count: int, step: int, steps: int, timestamp: str, interrupted: bool
) -> ProgressState:
    return ProgressState(
        skipped=False,
        interrupted=interrupted,
        stopping_generation=interrupted,
        job=job,
        job_count=count,
        job_timestamp=timestamp,
        job_no=0,
        sampling_step=step,
        sampling_steps=steps,
    )


class OptionsStore:
    """Options clients set through ``POST /options``, kept in memory for this app's lifetime.

    One store per family sub-app (``app.state.options``), never a module global.
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def update(self, values: Mapping[str, Any]) -> None:
        """Remember ``values`` (the whole store is capped so a client cannot grow it forever)."""
        merged = {**self.values, **values}
        if len(merged) > MAX_OPTION_KEYS:
            raise InvalidRequestError(f"at most {MAX_OPTION_KEYS} options may be set")
        self.values = merged


def options_view(
    stored: Mapping[str, Any],
    *,
    checkpoint: str | None,
    checkpoint_hash: str | None,
    settings: Settings,
    admin: bool = False,
) -> dict[str, Any]:  # free-form: A1111's options map, and any key a client stored
    """``GET /options``: every A1111 stock option (its default, or this server's value where it
    has one), then what clients stored. Folders on the server only for ``admin``."""
    view: dict[str, Any] = copy.deepcopy(dict(STOCK_OPTIONS))
    output = str(settings.output_path) if admin else ""
    view.update(dict.fromkeys(PATH_OPTIONS, output))
    view.update(
        {
            "sd_model_checkpoint": checkpoint,
            "sd_checkpoint_hash": checkpoint_hash,
            "live_previews_enable": settings.preview != "none",
            "show_progress_every_n_steps": settings.preview_interval,
        }
    )
    for key, value in stored.items():
        if key not in ("sd_model_checkpoint", "sd_checkpoint_hash", *PATH_OPTIONS):
            view[key] = value
    return view


PATH_FLAGS = (
    "ckpt_dir",
    "lora_dir",
    "data_dir",
    "models_dir",
    "output_dir",
    "config_file",
    "ui_dir",
)
"""Flags and settings that are folders or files on the server: shown to admins only (any other
value that is an absolute path is left out for others too)."""


def _is_server_path(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith(("/", "~", "\\")) or value[1:3] == ":\\")


def cmd_flags(settings: Settings, *, admin: bool = False) -> dict[str, Any]:  # free-form
    """``GET /cmd-flags``: A1111's main flags, then every sdrest setting (secrets left out;
    server paths only for ``admin``)."""
    flags: dict[str, Any] = {
        "api": True,
        "nowebui": True,
        "listen": settings.host not in ("127.0.0.1", "localhost", "::1"),
        "port": settings.port,
        "ckpt_dir": str(settings.models_path),
        "lora_dir": str(settings.models_path / "lora"),
        "data_dir": str(settings.data_path),
        "api_auth": None if settings.auth.auth_mode == "none" else settings.auth.auth_mode,
        "xformers": False,
        "lowvram": settings.load.offload_to_cpu,
    }
    tree = public_settings(settings)
    for name, (section, _info) in setting_fields().items():
        if name in SECRET_SETTINGS:
            continue
        value = tree.get(section, {}).get(name) if section else tree.get(name)
        flags.setdefault(name, value)
    if not admin:
        flags = {
            name: value
            for name, value in flags.items()
            if name not in PATH_FLAGS and not _is_server_path(value)
        }
    return flags
