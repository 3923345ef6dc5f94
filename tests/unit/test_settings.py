"""Settings precedence: flags > environment > config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdrest.cli import build_parser
from sdrest.errors import InvalidRequestError
from sdrest.settings import load_settings


def test_defaults_need_no_config() -> None:
    settings = load_settings({}, env={})
    assert (settings.host, settings.port, settings.models_dir) == ("127.0.0.1", 8080, "models")
    assert settings.limits.max_queue == 64 and settings.limits.max_batch == 50
    assert settings.output_path == settings.data_path / "outputs"


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "sdrest.toml"
    config.write_text(
        'port = 1000\nmodels_dir = "from-file"\nmodel = "m"\n'
        "[load]\nthreads = 3\nclip_on_cpu = true\n"
        "[limits]\nmax_queue = 5\n"
        '[presets.flux]\ndiffusion_model = "d"\nvae = "v"\ndefaults = { width = 1024 }\n'
    )
    env = {
        "STABLE_DIFFUSION_PORT": "2000",
        "SDREST_MODELS_DIR": "from-env",
        "SDREST_THREADS": "4",
        "SDREST_MAX_QUEUE": "6",
    }
    settings = load_settings({"port": 3000}, env=env, config_file=config)
    assert settings.port == 3000  # flag beats env beats file
    assert settings.models_dir == "from-env"
    assert settings.model == "m"
    assert settings.load.threads == 4 and settings.load.clip_on_cpu is True
    assert settings.limits.max_queue == 6
    preset = settings.presets["flux"]
    assert preset.name == "flux" and preset.vae == "v" and preset.defaults == {"width": 1024}


def test_bad_values_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="port"):
        load_settings({}, env={"SDREST_PORT": "eighty"})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(InvalidRequestError, match="not valid TOML"):
        load_settings({}, env={}, config_file=bad)
    with pytest.raises(InvalidRequestError, match="not found"):
        load_settings({}, env={}, config_file=tmp_path / "missing.toml")
    bad_preset = tmp_path / "preset.toml"
    bad_preset.write_text(
        '[presets.p]\nmodel = "m"\ndefaults = { sample_params = { sample_steps = "x" } }\n'
    )
    with pytest.raises(InvalidRequestError, match="preset 'p' defaults"):
        load_settings({}, env={}, config_file=bad_preset)
    with pytest.raises(InvalidRequestError, match="weight_type"):
        load_settings({"weight_type": "q9"}, env={})


def test_a_database_url_must_be_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidRequestError, match="postgresql://"):
        load_settings({"database_url": "mysql://db/x"}, env={})
    url = "postgresql://node@db/sdrest"
    assert load_settings({}, env={"SDREST_DATABASE_URL": url}).database_url == url
    # A plain install lacks the driver (the postgres extra): a start-up error naming it.
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(InvalidRequestError, match=r"sdrest\[postgres\]"):
        load_settings({"database_url": url}, env={})


def test_cli_flags_are_derived_from_settings() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--port",
            "9000",
            "--offload-to-cpu",
            "--weight-type",
            "q8_0",
            "--no-mmap",
            "--max-batch",
            "2",
        ]
    )
    assert (args.port, args.offload_to_cpu, args.weight_type, args.mmap, args.max_batch) == (
        9000,
        True,
        "q8_0",
        False,
        2,
    )
    assert args.host is None  # not given: lower-precedence sources decide
