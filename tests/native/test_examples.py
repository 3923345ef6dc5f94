"""The examples in examples/ run against a real server (and the real library) and do what they
say: each writes the images it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sdrest.testing import TinyModelSet
from tests.live import LiveServer

pytestmark = pytest.mark.native
EXAMPLES = Path(__file__).parents[2] / "examples"
SMALL = ["--size", "64", "--steps", "1"]


def run_example(name: str, args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args, *SMALL],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def assert_png(path: Path, size: tuple[int, int] = (64, 64)) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size


def test_openai_client(live: LiveServer, tmp_path: Path) -> None:
    run_example("openai_client.py", ["--url", live.url], tmp_path)
    assert_png(tmp_path / "openai-0.png")
    assert_png(tmp_path / "openai-1.png")


def test_a1111_client(live: LiveServer, tmp_path: Path) -> None:
    log = run_example("a1111_client.py", ["--port", str(live.port)], tmp_path)
    assert_png(tmp_path / "a1111.png")
    assert "upscaled with tiny-esrgan-x2" in log
    assert_png(tmp_path / "upscaled-a1111.png", (128, 128))


def test_websocket_progress(live: LiveServer, tmp_path: Path) -> None:
    log = run_example("websocket_progress.py", ["--url", live.url], tmp_path)
    assert "completed" in log
    assert_png(tmp_path / "ws.png")


def test_library(tiny_models: TinyModelSet, tmp_path: Path) -> None:
    args = ["--models-dir", str(tiny_models.root), "--data-dir", str(tmp_path / "data")]
    log = run_example("library.py", [*args, "--out", "lib.png"], tmp_path)
    assert_png(tmp_path / "lib.png")
    with Image.open(tmp_path / "lib.png") as image:
        assert "Seed: 42" in image.info["parameters"]  # saved with its infotext
    assert "sampling 1/1" in log and "wrote lib.png (seed 42, 1 steps)" in log
    assert "variation: seed " in log
