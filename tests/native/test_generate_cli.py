"""``sdrest generate`` as a user runs it: a process of its own, locally on the real library and
against a running server that wants an API key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sdrest.images import parse_infotext
from sdrest.testing import TinyModelSet
from tests.live import serve_process

pytestmark = pytest.mark.native
SDREST = [sys.executable, "-m", "sdrest"]
QUICK = ["-W", "64", "-H", "64", "--steps", "2", "--cfg-scale", "1", "--sampler", "euler"]


def generate(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*SDREST, "generate", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def params(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        text = image.info.get("parameters")
        if text is None:  # WebP and JPEG carry it as EXIF
            from sdrest.images import read_infotext

            text = read_infotext(path.read_bytes())
    assert isinstance(text, str), f"{path} has no infotext"
    return parse_infotext(text)


def test_local_batch_img2img_and_inpaint(tiny_models: TinyModelSet, tmp_path: Path) -> None:
    local = ["--models-dir", str(tiny_models.root), "--model", "tiny-flux2", "--threads", "2"]
    done = generate("a lovely cat", *local, *QUICK, "-s", "5", "-b", "2", "-o", "out/cat.png",
                    cwd=tmp_path)  # fmt: skip
    assert done.stdout.splitlines() == ["out/cat.png\tseed 5", "out/cat_2.png\tseed 6"]
    first, second = params(tmp_path / "out/cat.png"), params(tmp_path / "out/cat_2.png")
    assert first["prompt"] == "a lovely cat" and first["Seed"] == "5" and second["Seed"] == "6"
    assert first["Steps"] == "2" and first["Sampler"] == "Euler" and first["Size"] == "64x64"
    # Not a terminal: plain progress lines, each sampling step of each image.
    lines = done.stderr.splitlines()
    assert lines.count("sampling 2/2") == 2 and "loading" in lines and "\r" not in done.stderr
    assert lines.index("sampling 0/2") < lines.index("sampling 1/2") < lines.index("sampling 2/2")

    Image.new("L", (64, 64), 0).save(tmp_path / "mask.png")
    edited = generate("-p", "a dog", *local, *QUICK, "-i", "out/cat.png", "--strength", "0.4",
                      "-s", "8", "-o", "out/dog-{seed}.webp", cwd=tmp_path)  # fmt: skip
    assert edited.stdout.strip() == "out/dog-8.webp\tseed 8"
    with Image.open(tmp_path / "out/dog-8.webp") as image:
        assert image.format == "WEBP" and image.size == (64, 64)
    assert params(tmp_path / "out/dog-8.webp")["Denoising strength"] == "0.4"
    painted = generate("a dog", *local, *QUICK, "-i", "out/cat.png", "--mask", "mask.png",
                       "--strength", "0.4", "-o", "painted.jpg", cwd=tmp_path)  # fmt: skip
    assert painted.stdout.startswith("painted.jpg\tseed ")
    with Image.open(tmp_path / "painted.jpg") as image:
        assert image.format == "JPEG"

    bad = generate("x", *local, "-o", "out/x.gif", cwd=tmp_path, ok=False)
    assert bad.returncode == 1 and "unknown image type '.gif'" in bad.stderr
    missing = generate("x", *local, "-i", "nope.png", cwd=tmp_path, ok=False)
    assert missing.returncode == 1 and "nope.png" in missing.stderr
    assert not (tmp_path / "output.png").exists()


def test_server_mode_with_an_api_key(
    tiny_models: TinyModelSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "server-data"
    admin = ["--data-dir", str(data)]
    subprocess.run([*SDREST, "users", "add", "alice", "--no-password", *admin], check=True)
    created = subprocess.run(
        [*SDREST, "keys", "create", "--user", "alice", *admin],
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    monkeypatch.setenv("SDREST_AUTH_MODE", "api-key")
    with serve_process(SDREST, tiny_models, data) as (_process, url):
        done = generate("a lovely cat", "--server", url, "--api-key", key, *QUICK, "-s", "21",
                        "-b", "2", "-o", "remote-{index}.png", cwd=tmp_path)  # fmt: skip
        assert done.stdout.splitlines() == ["remote-1.png\tseed 21", "remote-2.png\tseed 22"]
        info = params(tmp_path / "remote-2.png")
        assert info["Seed"] == "22" and info["Model"] == "tiny-flux2" and info["Steps"] == "2"
        refused = generate("x", "--server", url, *QUICK, cwd=tmp_path, ok=False)
        assert refused.returncode == 1 and "401" in refused.stderr
        wrong = generate("x", "--server", url, "--api-key", "nope", *QUICK, cwd=tmp_path, ok=False)
        assert wrong.returncode == 1 and "401" in wrong.stderr
    gone = generate("x", "--server", url, "--api-key", key, cwd=tmp_path, ok=False)
    assert gone.returncode == 1 and "cannot reach" in gone.stderr
