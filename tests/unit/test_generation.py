"""The Generator's pieces that need no engine: request fields from keyword arguments, image
info, output names, the progress bar, and the private loop thread."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from sdrest.cli import build_parser
from sdrest.cli_generate import ProgressBar, output_paths
from sdrest.errors import InvalidRequestError
from sdrest.generation import ImageInfo, image_info, output_format, request_layer, save_image
from sdrest.generator_async import make_settings
from sdrest.generator_loop import LoopThread, Relay


def test_request_layer_sets_only_what_was_given() -> None:
    assert request_layer("cat") == {"prompt": "cat"}
    layer = request_layer(
        "cat",
        steps=4,
        cfg_scale=1.5,
        sampler="euler",
        seed=3,
        loras={"style": 0.5},
        fields={"clip_skip": 2, "sample_params": {"eta": 0.1}},
    )
    assert layer == {
        "prompt": "cat",
        "seed": 3,
        "clip_skip": 2,
        "sample_params": {
            "eta": 0.1,
            "sample_steps": 4,
            "sample_method": "euler",
            "guidance": {"txt_cfg": 1.5},
        },
        "lora": [{"path": "style", "multiplier": 0.5}],
    }


def test_image_info_reads_an_attached_info_or_a_saved_file(tmp_path: Path) -> None:
    text = "a cat\nNegative prompt: dogs\nSteps: 4, Sampler: euler, Seed: 77, Size: 8x8"
    image = Image.new("RGB", (8, 8))
    image.info["parameters"] = text
    path = save_image(image, tmp_path / "cat.png")
    info = image_info(Image.open(path))
    assert (info.seed, info.prompt, info.negative_prompt) == (77, "a cat", "dogs")
    assert info.parameters == {"Steps": "4", "Sampler": "euler", "Seed": "77", "Size": "8x8"}
    attached = Image.new("RGB", (8, 8))
    attached.info["sdrest"] = ImageInfo(seed=5)
    assert image_info(attached).seed == 5
    with pytest.raises(ValueError, match="no generation parameters"):
        image_info(Image.new("RGB", (8, 8)))
    webp = save_image(image, tmp_path / "cat.webp")
    assert Image.open(io.BytesIO(webp.read_bytes())).format == "WEBP"


def test_output_names() -> None:
    assert output_paths("out.png", [5]) == [Path("out.png")]
    assert output_paths("d/out.png", [5, 6, 7]) == [
        Path("d/out.png"),
        Path("d/out_2.png"),
        Path("d/out_3.png"),
    ]
    assert output_paths("c-{seed}-{index}.jpg", [5, 6]) == [Path("c-5-1.jpg"), Path("c-6-2.jpg")]
    with pytest.raises(InvalidRequestError, match="use only"):
        output_paths("c-{n}.png", [1])
    assert output_format("x.JPG") == "jpeg"
    with pytest.raises(InvalidRequestError, match="unknown image type"):
        output_format("x.gif")


def test_progress_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    for report in [(1, 9, "loading"), (9, 9, "loading"), (0, 2, "sampling"), (0, 2, "sampling")]:
        bar(*report)
    bar(1, 2, "sampling")
    bar.end()
    assert stream.getvalue() == "loading\nsampling 0/2\nsampling 1/2\n"


def test_generate_is_a_command_with_the_setting_flags() -> None:
    args = build_parser().parse_args(
        ["generate", "a cat", "-W", "64", "-H", "32", "-s", "3", "--threads", "2", "-o", "x.png"]
    )
    assert (args.prompt_text, args.width, args.height, args.seed) == ("a cat", 64, 32, 3)
    assert args.threads == 2 and args.output == "x.png" and args.server is None


def test_settings_use_a_private_folder_unless_given(tmp_path: Path) -> None:
    settings, temporary = make_settings("models", "m", None, None, None, {"threads": 3})
    assert temporary is not None and settings.data_dir == str(temporary) and temporary.is_dir()
    assert settings.load.threads == 3 and settings.preview == "none" and settings.model == "m"
    temporary.rmdir()
    given, none = make_settings("models", "", tmp_path, None, None, {})
    assert none is None and given.data_dir == str(tmp_path)
    with pytest.raises(TypeError, match="not both"):
        make_settings("models", "", None, given, None, {"threads": 1})


async def test_the_loop_thread_runs_inside_a_running_loop_and_stops_on_interrupt() -> None:
    thread = LoopThread()
    try:

        async def count(relay: Relay | None) -> str:
            assert relay is not None
            for step in range(3):
                relay(step, 3, "sampling")
            return "done"

        seen: list[tuple[int, int, str]] = []
        result = thread.run(count, lambda *report: seen.append(report))
        assert result == "done" and seen == [
            (0, 3, "sampling"),
            (1, 3, "sampling"),
            (2, 3, "sampling"),
        ]

        stopped = asyncio.Event()  # set on the thread's loop: read only after the run

        async def forever(relay: Relay | None) -> None:
            assert relay is not None
            try:
                relay(0, 1, "sampling")
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                stopped.set()
                raise

        def interrupt(*_report: object) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            thread.run(forever, interrupt)
        assert stopped.is_set()  # the coroutine was cancelled before the interrupt went on
    finally:
        thread.close()
    assert not thread.alive
    with pytest.raises(RuntimeError, match="closed"):
        thread.run(lambda _relay: asyncio.sleep(0))
