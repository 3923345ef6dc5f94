"""The stable-diffusion.cpp-rest readme's Python, JavaScript and curl examples, run as written
(host aside) against a real HTTP server over the fake engine: its clients switch without
editing a line. The examples are in ``readme_examples/`` (see its README)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes import FakeEngine
from tests.live import live_server

pytestmark = pytest.mark.slow  # starts a server and client processes

EXAMPLES = Path(__file__).parent / "readme_examples"
SPEC_HOST = "localhost:8080"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from sdrest.settings import load_settings
    from tests.fakes import write_fake_checkpoint

    root = tmp_path_factory.mktemp("readme")
    # Two models and no --model: the examples name none, so the default applies (issue 12/10).
    write_fake_checkpoint(root / "models" / "checkpoints" / "sd-v1-5.safetensors")
    write_fake_checkpoint(root / "models" / "checkpoints" / "other.safetensors")
    settings = load_settings(
        {"models_dir": str(root / "models"), "data_dir": str(root / "data")}, env={}
    )
    with live_server(settings, engine=FakeEngine()) as server:
        yield server.url.removeprefix("http://")


def _example(name: str, host: str) -> str:
    return (EXAMPLES / name).read_text().replace(SPEC_HOST, host)


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_python_example_writes_the_image(host: str, tmp_path: Path) -> None:
    _run([sys.executable, "-c", _example("generate.py.txt", host)], tmp_path)
    with Image.open(tmp_path / "generated_image.png") as image:
        assert image.format == "PNG" and image.size == (512, 512)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript_example_appends_the_image(host: str, tmp_path: Path) -> None:
    # The example runs in a page: a minimal document records what it appends.
    page = (
        "const appended = [];\n"
        "globalThis.document = { createElement: (tag) => ({ tag }),"
        " body: { appendChild: (el) => appended.push(el) } };\n"
        + _example("generate.js", host)
        + "\ngenerateImage().then(() => console.log(JSON.stringify(appended)));\n"
    )
    script = tmp_path / "page.js"
    script.write_text(page)
    appended = json.loads(_run(["node", str(script)], tmp_path))
    assert len(appended) == 1 and appended[0]["tag"] == "img"
    prefix = "data:image/png;base64,"
    assert appended[0]["src"].startswith(prefix)
    png = base64.b64decode(appended[0]["src"][len(prefix) :])
    assert png.startswith(b"\x89PNG")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples(host: str, tmp_path: Path) -> None:
    script = _example("curl.sh", host)
    generate, rest = script.split("# Check job status")
    result = json.loads(_run(["bash", "-c", generate], tmp_path))
    assert result["status"] == "completed" and len(result["images"]) == 1
    image = result["images"][0]
    assert image["parameters"]["width"] == 512 and image["parameters"]["steps"] == 20
    assert image["parameters"]["model"] == "other"  # several models, no --model: first by name
    assert result["generation_time"] >= 0
    out = _run(["bash", "-c", rest.replace("{job_id}", result["job_id"])], tmp_path)
    decoder = json.JSONDecoder()
    status, end = decoder.raw_decode(out)
    models, _ = decoder.raw_decode(out[end:].lstrip())
    assert status["job_id"] == result["job_id"] and status["status"] == "completed"
    assert status["images"][0]["data"] == image["data"]
    assert {"sd-v1-5", "other"} <= {m["name"] for m in models["models"]}
