"""The one A1111 <-> stable-diffusion.cpp sampler/scheduler table, both directions."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdrest.api.sdapi import samplers
from sdrest.api.sdapi.samplers import SamplerNameError, resolve
from sdrest.schemas import SAMPLE_METHODS, SCHEDULERS

A1111_SUPPORTED = {
    "Euler a": "euler_a",
    "Euler": "euler",
    "Heun": "heun",
    "DPM2": "dpm2",
    "DPM++ 2S a": "dpm++2s_a",
    "DPM++ 2M": "dpm++2m",
    "LCM": "lcm",
    "DDIM": "ddim_trailing",
}
A1111_UNSUPPORTED = [
    "LMS",
    "DPM2 a",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun",
    "DPM++ 3M SDE",
    "DPM fast",
    "DPM adaptive",
    "Restart",
    "UniPC",
    "PLMS",
    "DDIM CFG++",
]


def test_every_native_sampler_has_exactly_one_entry() -> None:
    assert sorted(info.sdcpp for info in samplers.SAMPLERS) == sorted(SAMPLE_METHODS)


def test_every_native_scheduler_is_reachable() -> None:
    mapped = {info.sdcpp for info in samplers.SCHEDULERS if info.sdcpp}
    assert mapped == set(SCHEDULERS)


@pytest.mark.parametrize(("name", "native"), sorted(A1111_SUPPORTED.items()))
def test_a1111_display_names(name: str, native: str) -> None:
    assert resolve(name, None) == (native, None)
    assert resolve(name.upper(), "automatic") == (native, None)
    assert resolve(f"  {name.lower()} ", "") == (native, None)


@pytest.mark.parametrize("native", SAMPLE_METHODS)
def test_native_names_round_trip(native: str) -> None:
    display = samplers.sampler_display_name(native)
    assert display is not None
    assert resolve(display, None) == (native, None)
    assert resolve(native, None) == (native, None)
    assert resolve(native.upper(), None) == (native, None)


@pytest.mark.parametrize("name", A1111_UNSUPPORTED)
def test_no_silent_substitute(name: str) -> None:
    with pytest.raises(SamplerNameError) as err:
        resolve(name, None)
    assert "no equivalent" in err.value.message
    assert "Euler a" in err.value.message  # the valid names are listed
    assert err.value.status == 400


def test_unknown_sampler_lists_valid_names() -> None:
    with pytest.raises(SamplerNameError) as err:
        resolve("Foo Bar", None)
    assert "unknown sampler 'Foo Bar'" in err.value.message
    assert "DPM++ 2M" in err.value.message
    assert err.value.field == "sampler_name"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DPM++ 2M Karras", ("dpm++2m", "karras")),
        ("dpm++ 2m karras", ("dpm++2m", "karras")),
        ("Euler a Exponential", ("euler_a", "exponential")),
        ("Euler SGM Uniform", ("euler", "sgm_uniform")),
        ("Euler Uniform", ("euler", "discrete")),
        ("DPM++ 2M Align Your Steps", ("dpm++2m", "ays")),
        ("LCM LCM", ("lcm", "lcm")),
        ("euler_a karras", ("euler_a", "karras")),
    ],
)
def test_old_combined_forms(name: str, expected: tuple[str, str]) -> None:
    assert resolve(name, None) == expected
    assert resolve(name, "automatic") == expected


def test_combined_form_agreeing_with_explicit_scheduler() -> None:
    assert resolve("DPM++ 2M Karras", "Karras") == ("dpm++2m", "karras")


def test_combined_form_contradicting_scheduler() -> None:
    with pytest.raises(SamplerNameError) as err:
        resolve("DPM++ 2M Karras", "Exponential")
    assert err.value.field == "scheduler"


def test_combined_form_with_unsupported_parts() -> None:
    with pytest.raises(SamplerNameError, match="DPM\\+\\+ SDE"):
        resolve("DPM++ SDE Karras", None)
    with pytest.raises(SamplerNameError, match="scheduler 'Beta' has no equivalent"):
        resolve("Euler Beta", None)


@pytest.mark.parametrize(
    ("name", "native"),
    [
        ("automatic", None),
        ("Automatic", None),
        ("Karras", "karras"),
        ("karras", "karras"),
        ("Exponential", "exponential"),
        ("SGM Uniform", "sgm_uniform"),
        ("SGMUniform", "sgm_uniform"),
        ("Simple", "simple"),
        ("Align Your Steps", "ays"),
        ("KL Optimal", "kl_optimal"),
        ("Uniform", "discrete"),
        ("Normal", "discrete"),
        ("Align Your Steps GITS", "gits"),
        ("smoothstep", "smoothstep"),
        ("bong_tangent", "bong_tangent"),
    ],
)
def test_schedulers(name: str, native: str | None) -> None:
    assert resolve(None, name) == (None, native)
    assert resolve("Euler", name) == ("euler", native)


@pytest.mark.parametrize("name", ["Beta", "Polyexponential", "DDIM", "Align Your Steps 11"])
def test_unsupported_schedulers(name: str) -> None:
    with pytest.raises(SamplerNameError) as err:
        resolve("Euler", name)
    assert "no equivalent" in err.value.message and "Karras" in err.value.message
    assert err.value.field == "scheduler"


def test_unknown_scheduler() -> None:
    with pytest.raises(SamplerNameError, match="unknown scheduler 'wobbly'"):
        resolve(None, "wobbly")


def test_unset_names() -> None:
    assert resolve(None, None) == (None, None)
    assert resolve("", "") == (None, None)
    assert resolve("default", "default") == (None, None)


@pytest.mark.parametrize("native", SCHEDULERS)
def test_scheduler_display_round_trip(native: str) -> None:
    assert resolve(None, samplers.scheduler_display_name(native)) == (None, native)


def test_display_names_of_unset() -> None:
    assert samplers.sampler_display_name(None) is None
    assert samplers.scheduler_display_name(None) == "automatic"


def test_listings_shape() -> None:
    listing = msgspec.to_builtins(samplers.samplers_listing())
    assert [s["name"] for s in listing] == samplers.valid_sampler_names()
    euler_a = next(s for s in listing if s["name"] == "Euler a")
    assert euler_a == {"name": "Euler a", "aliases": ["euler_a", "k_euler_a", "k_euler_ancestral"],
                       "options": {}}  # fmt: skip
    assert not any(s["name"] in A1111_UNSUPPORTED for s in listing)
    scheds = msgspec.to_builtins(samplers.schedulers_listing())
    assert scheds[0]["name"] == "automatic"
    karras = next(s for s in scheds if s["name"] == "karras")
    assert karras == {"name": "karras", "label": "Karras", "aliases": [], "default_rho": 7.0,
                      "need_inner_model": False}  # fmt: skip
    uniform = next(s for s in scheds if s["name"] == "uniform")
    assert uniform["aliases"] == ["discrete"]
    for entry in scheds:
        assert set(entry) == {"name", "label", "aliases", "default_rho", "need_inner_model"}


@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=30)))
def test_any_name_resolves_or_is_a_400(sampler: str, scheduler: str | None) -> None:
    try:
        method, sched = resolve(sampler, scheduler)
    except SamplerNameError as exc:
        assert exc.status == 400 and exc.field in ("sampler_name", "scheduler")
        return
    assert method is None or method in SAMPLE_METHODS
    assert sched is None or sched in SCHEDULERS
