"""The ONE mapping between AUTOMATIC1111 sampler/scheduler names and stable-diffusion.cpp's.

A1111 clients send display names ("Euler a", "DPM++ 2M"), old combined forms ("DPM++ 2M Karras" =
sampler + scheduler) and scheduler labels ("Karras", "SGM Uniform"); sd.cpp clients send the
library's own names ("euler_a", "karras"). All are matched case-insensitively through the tables
below. A name A1111 knows but stable-diffusion.cpp has no honest equivalent for is refused with the
list of valid names: silently sampling with another algorithm would make results lie.
"""

from __future__ import annotations

import msgspec

from sdrest.api.sdapi.responses import SamplerItem, SchedulerItem
from sdrest.errors import InvalidRequestError


class SamplerInfo(msgspec.Struct, frozen=True):
    """One sampler: its A1111 display name, the sd.cpp ``sample_method``, other accepted names."""

    name: str
    sdcpp: str
    aliases: tuple[str, ...] = ()


class SchedulerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One scheduler as A1111 lists it; ``sdcpp`` None is "automatic" (the model's default)."""

    name: str
    label: str
    sdcpp: str | None
    aliases: tuple[str, ...] = ()
    default_rho: float = -1.0
    need_inner_model: bool = False


SAMPLERS: tuple[SamplerInfo, ...] = (
    SamplerInfo("Euler a", "euler_a", ("k_euler_a", "k_euler_ancestral")),
    SamplerInfo("Euler", "euler", ("k_euler",)),
    SamplerInfo("Heun", "heun", ("k_heun",)),
    SamplerInfo("DPM2", "dpm2", ("k_dpm_2",)),
    SamplerInfo("DPM++ 2S a", "dpm++2s_a", ("k_dpmpp_2s_a",)),
    SamplerInfo("DPM++ 2M", "dpm++2m", ("k_dpmpp_2m",)),
    SamplerInfo("DPM++ 2M v2", "dpm++2mv2", ()),
    SamplerInfo("iPNDM", "ipndm", ()),
    SamplerInfo("iPNDM_v", "ipndm_v", ()),
    SamplerInfo("LCM", "lcm", ("k_lcm",)),
    # sd.cpp's DDIM uses trailing timestep spacing; the update rule is A1111's DDIM.
    SamplerInfo("DDIM", "ddim_trailing", ("ddim",)),
    SamplerInfo("TCD", "tcd", ()),
    SamplerInfo("Res Multistep", "res_multistep", ()),
    SamplerInfo("Res 2s", "res_2s", ()),
    SamplerInfo("ER SDE", "er_sde", ()),
)

# A1111 samplers stable-diffusion.cpp does not implement (with their k-diffusion aliases).
UNSUPPORTED_SAMPLERS: tuple[str, ...] = (
    "LMS",
    "k_lms",
    "DPM2 a",
    "k_dpm_2_a",
    "DPM++ SDE",
    "k_dpmpp_sde",
    "DPM++ 2M SDE",
    "k_dpmpp_2m_sde",
    "DPM++ 2M SDE Heun",
    "k_dpmpp_2m_sde_heun",
    "DPM++ 3M SDE",
    "k_dpmpp_3m_sde",
    "DPM fast",
    "k_dpm_fast",
    "DPM adaptive",
    "k_dpm_ad",
    "Restart",
    "DDIM CFG++",
    "PLMS",
    "UniPC",
    "Euler CFG++",
    "Euler a CFG++",
    "DPM++ 2M CFG++",
)

SCHEDULERS: tuple[SchedulerInfo, ...] = (
    SchedulerInfo(name="automatic", label="Automatic", sdcpp=None, aliases=("default",)),
    # A1111's uniform and normal both space timesteps linearly from t_max to 0, as sd.cpp's
    # discrete schedule does.
    SchedulerInfo(
        name="uniform", label="Uniform", sdcpp="discrete", aliases=("discrete",),
        need_inner_model=True,
    ),
    SchedulerInfo(name="karras", label="Karras", sdcpp="karras", default_rho=7.0),
    SchedulerInfo(name="exponential", label="Exponential", sdcpp="exponential"),
    SchedulerInfo(
        name="sgm_uniform", label="SGM Uniform", sdcpp="sgm_uniform", aliases=("SGMUniform",),
        need_inner_model=True,
    ),
    SchedulerInfo(name="kl_optimal", label="KL Optimal", sdcpp="kl_optimal"),
    SchedulerInfo(name="align_your_steps", label="Align Your Steps", sdcpp="ays", aliases=("ays",)),
    SchedulerInfo(name="simple", label="Simple", sdcpp="simple", need_inner_model=True),
    SchedulerInfo(name="normal", label="Normal", sdcpp="discrete", need_inner_model=True),
    SchedulerInfo(
        name="align_your_steps_GITS", label="Align Your Steps GITS", sdcpp="gits",
        aliases=("gits",),
    ),
    SchedulerInfo(name="smoothstep", label="Smoothstep", sdcpp="smoothstep"),
    SchedulerInfo(name="lcm", label="LCM", sdcpp="lcm"),
    SchedulerInfo(name="bong_tangent", label="Bong Tangent", sdcpp="bong_tangent"),
)  # fmt: skip

UNSUPPORTED_SCHEDULERS: tuple[str, ...] = (
    "Polyexponential",
    "DDIM",
    "Beta",
    "Align Your Steps 11",
    "Align Your Steps 32",
    "Turbo",
)


def _key(name: str) -> str:
    return " ".join(name.split()).lower()


def _sampler_index() -> dict[str, SamplerInfo]:
    index: dict[str, SamplerInfo] = {}
    for info in SAMPLERS:
        for name in (info.name, info.sdcpp, *info.aliases):
            index.setdefault(_key(name), info)
    return index


def _scheduler_index() -> dict[str, SchedulerInfo]:
    index: dict[str, SchedulerInfo] = {}
    for info in SCHEDULERS:
        names = [info.name, info.label, *info.aliases]
        if info.sdcpp is not None:
            names.append(info.sdcpp)
        for name in names:
            index.setdefault(_key(name), info)
    return index


# Constant lookup tables, built once from the tuples above.
_SAMPLER_BY_KEY = _sampler_index()
_SCHEDULER_BY_KEY = _scheduler_index()
_UNSUPPORTED_SAMPLER_KEYS = frozenset(_key(n) for n in UNSUPPORTED_SAMPLERS)
_UNSUPPORTED_SCHEDULER_KEYS = frozenset(_key(n) for n in UNSUPPORTED_SCHEDULERS)
# Longest first, so "SGM Uniform" wins over "Uniform" as a suffix of "Euler SGM Uniform".
_SUFFIXES: tuple[tuple[str, SchedulerInfo], ...] = tuple(
    sorted(_SCHEDULER_BY_KEY.items(), key=lambda item: -len(item[0]))
)
_UNSUPPORTED_SUFFIXES = tuple(sorted(_UNSUPPORTED_SCHEDULER_KEYS, key=lambda k: -len(k)))


class SamplerNameError(InvalidRequestError):
    """A sampler or scheduler name with no stable-diffusion.cpp equivalent (400)."""

    code = "unknown_sampler"


def valid_sampler_names() -> list[str]:
    """Display names clients may send (sd.cpp names and aliases work too)."""
    return [info.name for info in SAMPLERS]


def valid_scheduler_names() -> list[str]:
    """Scheduler labels clients may send (names, aliases and sd.cpp names work too)."""
    return [info.label for info in SCHEDULERS]


def _sampler_error(name: str, field: str) -> SamplerNameError:
    valid = ", ".join(valid_sampler_names())
    if _key(name) in _UNSUPPORTED_SAMPLER_KEYS:
        reason = f"sampler {name!r} has no equivalent in stable-diffusion.cpp"
    else:
        reason = f"unknown sampler {name!r}"
    return SamplerNameError(f"{reason}; valid samplers: {valid}", field=field)


def _scheduler_error(name: str, field: str) -> SamplerNameError:
    valid = ", ".join(valid_scheduler_names())
    if _key(name) in _UNSUPPORTED_SCHEDULER_KEYS:
        reason = f"scheduler {name!r} has no equivalent in stable-diffusion.cpp"
    else:
        reason = f"unknown scheduler {name!r}"
    return SamplerNameError(f"{reason}; valid schedulers: {valid}", field=field)


def find_scheduler(name: str | None, field: str = "scheduler") -> SchedulerInfo | None:
    """The scheduler called ``name``; None for no name ("" too). Raises for unknown names."""
    if name is None or not name.strip():
        return None
    info = _SCHEDULER_BY_KEY.get(_key(name))
    if info is None:
        raise _scheduler_error(name, field)
    return info


def _split_suffix(key: str) -> tuple[str, SchedulerInfo | None, str | None]:
    """(sampler part, scheduler named by a trailing " <scheduler>", unsupported suffix)."""
    for suffix, info in _SUFFIXES:
        if key.endswith(" " + suffix):
            return key[: -len(suffix) - 1], info, None
    for suffix in _UNSUPPORTED_SUFFIXES:
        if key.endswith(" " + suffix):
            return key[: -len(suffix) - 1], None, suffix
    return key, None, None


def resolve(
    sampler: str | None, scheduler: str | None, *, field: str = "sampler_name"
) -> tuple[str | None, str | None]:
    """(sd.cpp sample_method, sd.cpp scheduler) for A1111 or sd.cpp names; None = model default.

    A scheduler named inside the sampler ("DPM++ 2M Karras") counts as the scheduler, as in
    A1111; it may not contradict an explicit ``scheduler``.
    """
    explicit = find_scheduler(scheduler)
    if sampler is None or _key(sampler) in ("", "default"):
        return None, explicit.sdcpp if explicit else None
    key = _key(sampler)
    info = _SAMPLER_BY_KEY.get(key)
    if info is not None:
        return info.sdcpp, explicit.sdcpp if explicit else None
    base, suffix, unsupported = _split_suffix(key)
    info = _SAMPLER_BY_KEY.get(base)
    if info is None:
        raise _sampler_error(sampler, field)
    if unsupported is not None:
        raise _scheduler_error(sampler[len(base) + 1 :].strip(), field)
    assert suffix is not None  # base differs from key only when a suffix was split off
    if explicit is not None and explicit.sdcpp is not None and explicit.sdcpp != suffix.sdcpp:
        raise SamplerNameError(
            f"sampler {sampler!r} names the {suffix.label} scheduler but scheduler is"
            f" {scheduler!r}; send one of them",
            field="scheduler",
        )
    return info.sdcpp, suffix.sdcpp


def sampler_display_name(sdcpp: str | None) -> str | None:
    """The A1111 display name of an sd.cpp sample_method (None stays None)."""
    if sdcpp is None:
        return None
    info = _SAMPLER_BY_KEY.get(_key(sdcpp))
    return info.name if info is not None else sdcpp


def scheduler_display_name(sdcpp: str | None) -> str:
    """The A1111 scheduler name of an sd.cpp scheduler; None is "automatic"."""
    if sdcpp is None:
        return "automatic"
    info = _SCHEDULER_BY_KEY.get(_key(sdcpp))
    return info.name if info is not None else sdcpp


def _scheduler_aliases(info: SchedulerInfo) -> list[str]:
    names = [*info.aliases, *([info.sdcpp] if info.sdcpp else [])]
    taken = {info.name, info.label}
    return [n for i, n in enumerate(names) if n not in taken and n not in names[:i]]


def samplers_listing() -> list[SamplerItem]:
    """``GET /sdapi/v1/samplers``: ``[{name, aliases, options}]``."""
    return [SamplerItem(info.name, [info.sdcpp, *info.aliases], {}) for info in SAMPLERS]


def schedulers_listing() -> list[SchedulerItem]:
    """``GET /sdapi/v1/schedulers``: ``[{name, label, aliases, default_rho, need_inner_model}]``."""
    return [
        SchedulerItem(
            info.name,
            info.label,
            _scheduler_aliases(info),
            info.default_rho,
            info.need_inner_model,
        )
        for info in SCHEDULERS
    ]


def split_combined_name(sampler: str) -> tuple[str, str | None]:
    """An old combined infotext name ("DPM++ 2M Karras") as (sampler name, scheduler label),
    as A1111's png-info splits it; any other name is returned whole with no scheduler."""
    key = _key(sampler)
    if key in _SAMPLER_BY_KEY:
        return sampler, None
    base, suffix, _unsupported = _split_suffix(key)
    info = _SAMPLER_BY_KEY.get(base)
    if info is None or suffix is None:
        return sampler, None
    return info.name, suffix.label
