"""The release build, as a user gets it: ``python -m build`` makes an sdist and a wheel (the wheel
built from the sdist, so the sdist is shown complete), the wheel installs into a clean virtual
environment with the locked runtime, and its own ``sdrest serve`` answers health, serves the web
UI and completes a generation on the real library, far from this checkout."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from sdrest.testing import TinyModelSet
from tests.live import serve_process

pytestmark = pytest.mark.native

ROOT = Path(__file__).resolve().parents[2]
# What a user needs besides the code: the web UI, the type marker, the tiny-model shapes.
PACKAGE_DATA = (
    "sdrest/web/static/index.html",
    "sdrest/web/static/app.js",
    "sdrest/web/static/generate.js",
    "sdrest/web/static/painter.js",
    "sdrest/web/static/style.css",
    "sdrest/py.typed",
    "sdrest/testing/tiny_model_shapes.json",
)


def _run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel of this checkout, built by the standard frontend (uv as its installer,
    the build backend pinned by requirements-build.lock)."""
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "UV_CONSTRAINT": str(ROOT / "requirements-build.lock")}
    _run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", out, ROOT], ROOT, env)
    return out


def test_the_sdist_and_the_wheel_carry_everything_a_user_needs(dist: Path) -> None:
    (wheel,) = dist.glob("sdrest-*.whl")
    (sdist,) = dist.glob("sdrest-*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in PACKAGE_DATA:
        assert name in in_wheel, f"{name} is missing from {wheel.name}"
        assert name in in_sdist, f"{name} is missing from {sdist.name}"
    assert "sdrest/engine/worker.py" in in_wheel
    assert not any(name.startswith("tests/") for name in in_wheel)
    entry_points = next(n for n in in_wheel if n.endswith(".dist-info/entry_points.txt"))
    assert "sdrest = sdrest.entry:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_wheel_serves_from_a_clean_environment(
    dist: Path, tiny_models: TinyModelSet, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("sdrest-*.whl")
    uv = Path(sys.executable).with_name("uv")
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run([uv, "venv", "--quiet", "--python", sys.executable, venv], tmp_path)
    # The locked runtime, hash-checked, from uv's cache: scripts/setup put every file there,
    # and a sync installs the complete lock as it is (no resolution, so no package metadata is
    # needed beyond the cached files),
    # the native binding's built wheel included, so this takes seconds (online, uv would
    # revalidate the binding's sdist and, behind a registry without cache headers, rebuild it).
    _run(
        [
            uv, "pip", "sync", "--quiet", "--offline", "--python", python, "--require-hashes",
            "--build-constraints", ROOT / "requirements-build.lock",
            ROOT / "requirements-runtime.lock",
        ],
        tmp_path,
    )  # fmt: skip
    _run([uv, "pip", "install", "--quiet", "--python", python, "--no-deps", wheel], tmp_path)
    # Run far from the checkout, with nothing of it on the path: the installed copy is used.
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([python, "-c", "import sdrest; print(sdrest.__file__)"], tmp_path, clean_env)
    assert Path(where.strip()).is_relative_to(venv), where

    installed_cli = [str(venv / "bin" / "sdrest")]
    with serve_process(installed_cli, tiny_models, tmp_path / "data", tmp_path) as (_, url):
        assert httpx.get(f"{url}/api/health", timeout=10).json()["status"] == "healthy"
        page = httpx.get(f"{url}/ui/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        script = httpx.get(f"{url}/ui/app.js", timeout=10)
        assert script.status_code == 200 and len(script.content) > 1000
        quick = {"prompt": "a cat", "width": 64, "height": 64, "sample_params": {"sample_steps": 1}}
        submitted = httpx.post(f"{url}/sdcpp/v1/img_gen", json=quick, timeout=10)
        assert submitted.status_code == 202, submitted.text
        job = httpx.get(
            f"{url}/sdcpp/v1/jobs/{submitted.json()['id']}", params={"wait": 60}, timeout=70
        ).json()
        assert job["status"] == "completed", job
        image = base64.b64decode(job["result"]["images"][0]["b64_json"])
        assert image.startswith(b"\x89PNG\r\n\x1a\n")
