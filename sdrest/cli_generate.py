"""``sdrest generate``: one-shot generation from the shell, like stable-diffusion.cpp's own CLI.

Locally it runs a :class:`~sdrest.Generator` (the engine in its worker process, no server);
with ``--server URL`` it sends the job to a running sdrest server (``POST /sdcpp/v1/img_gen``,
then ``GET /sdcpp/v1/jobs/{id}?wait=``). Either way the files it writes are the server's own
encoding, infotext included; it prints each path and seed on stdout and its progress on stderr
(a bar on a terminal, plain lines otherwise).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec

from sdrest.errors import InvalidRequestError, SdrestError
from sdrest.settings import Settings

POLL_WAIT = 1.0
"""Seconds each long poll of ``--server`` waits (how often the bar moves)."""
_BAR = 30


def add_parser(commands: Any, add_setting_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``sdrest generate`` (the settings flags come from ``add_setting_flags``)."""
    sub: argparse.ArgumentParser = commands.add_parser(
        "generate",
        help="generate images from the shell (locally, or on a running server with --server)",
        description="Generate images and write them with their infotext. Local by default "
        "(--models-dir, --model and the other setting flags as serve takes them).",
    )
    sub.add_argument("prompt_text", nargs="?", metavar="PROMPT", help="the prompt")
    sub.add_argument("-p", "--prompt", help="the prompt (instead of PROMPT)")
    sub.add_argument("-n", "--negative-prompt")
    sub.add_argument("-W", "--width", type=int)
    sub.add_argument("-H", "--height", type=int)
    sub.add_argument("--steps", type=int)
    sub.add_argument("--cfg-scale", type=float)
    sub.add_argument("--sampler", "--sampling-method", dest="sampler")
    sub.add_argument("--scheduler")
    sub.add_argument("-s", "--seed", type=int, default=-1, help="negative: random (default)")
    sub.add_argument("-b", "--batch-count", type=int)
    sub.add_argument("-i", "--init-img", help="img2img: the input image")
    sub.add_argument("--strength", type=float, help="img2img strength, 0..1 (default 0.75)")
    sub.add_argument("--mask", help="inpainting: white is repainted (needs --init-img)")
    sub.add_argument(
        "-o",
        "--output",
        default="output.png",
        help="file to write (.png, .jpg, .webp); a batch adds _2, _3... before the suffix, "
        "or use {index} and {seed} in the name (default output.png)",
    )
    sub.add_argument("--server", help="base URL of a running sdrest server to generate on")
    sub.add_argument("--api-key", help="API key or token for --server (sent as a bearer token)")
    sub.add_argument("--config", help="TOML config file (env SDREST_CONFIG)")
    add_setting_flags(sub)


def output_paths(pattern: str, seeds: list[int]) -> list[Path]:
    """Where each image goes: ``{index}`` (1-based) and ``{seed}`` filled in, or, without them,
    ``name.png``, ``name_2.png``... as stable-diffusion.cpp names a batch."""
    if "{" in pattern:
        try:
            return [Path(pattern.format(index=i + 1, seed=s)) for i, s in enumerate(seeds)]
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidRequestError(
                f"--output {pattern!r}: use only {{index}} and {{seed}}"
            ) from exc
    path = Path(pattern)
    return [path if i == 0 else path.with_stem(f"{path.stem}_{i + 1}") for i in range(len(seeds))]


class ProgressBar:
    """``progress(step, steps, phase)`` drawn on ``stream``: a bar redrawn in place on a
    terminal, else one line per phase and per sampling step."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last: tuple[str, int] = ("", -1)
        self._drawn = False

    def __call__(self, step: int, steps: int, phase: str) -> None:
        """Show one progress report."""
        if self.tty:
            filled = _BAR * step // steps if steps > 0 else 0
            bar = "#" * filled + "." * (_BAR - filled)
            self.stream.write(f"\r{phase:<10} [{bar}] {step}/{steps}   ")
            self._drawn = True
        elif phase != self._last[0] or (phase != "loading" and step != self._last[1]):
            self.stream.write(f"{phase} {step}/{steps}\n" if phase != "loading" else "loading\n")
        self._last = (phase, step)
        self.stream.flush()

    def end(self) -> None:
        """Finish the bar's line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _prompt(args: argparse.Namespace) -> str:
    prompt = args.prompt if args.prompt is not None else args.prompt_text
    if prompt is None:
        raise InvalidRequestError("give a prompt (PROMPT or -p)")
    if args.mask and not args.init_img:
        raise InvalidRequestError("--mask needs --init-img")
    return str(prompt)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The generation options the command line set (request_layer's keyword arguments)."""
    from sdrest.generation import output_format  # Pillow: only when generating, not for --help
    given = {
        "negative_prompt": args.negative_prompt,
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "cfg_scale": args.cfg_scale,
        "sampler": args.sampler,
        "scheduler": args.scheduler,
        "seed": args.seed,
        "batch_count": args.batch_count,
        "strength": args.strength,
        "output_format": output_format(args.output),
    }
    return {k: v for k, v in given.items() if v is not None}


def _report(out: IO[str], written: list[tuple[Path, int]]) -> None:
    for path, seed in written:
        out.write(f"{path}\tseed {seed}\n")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``sdrest generate``: 0 when every image was written."""
    if args.log_level is None:  # the bar owns stderr: only warnings and errors besides it
        logging.getLogger().setLevel(logging.WARNING)
    bar = ProgressBar(sys.stderr)
    try:
        prompt = _prompt(args)
        options = _options(args)
        if args.server:
            written = _remote(args, prompt, options, bar)
        else:
            written = _local(args, settings, prompt, options, bar)
    except KeyboardInterrupt:
        bar.end()
        sys.stderr.write("sdrest: cancelled\n")
        return 130
    except SdrestError as exc:
        bar.end()
        sys.stderr.write(f"sdrest: {exc.message}\n")
        return 1
    except OSError as exc:
        bar.end()
        sys.stderr.write(f"sdrest: {exc}\n")
        return 1
    bar.end()
    _report(sys.stdout, written)
    return 0


def _local(
    args: argparse.Namespace,
    settings: Settings,
    prompt: str,
    options: dict[str, Any],
    bar: ProgressBar,
) -> list[tuple[Path, int]]:
    from sdrest.generation import image_info
    from sdrest.generator import Generator

    # Only a folder given on the command line: a server's (from the environment or the config)
    # is never shared, its queue never recovered here. Previews off unless asked for. No
    # preload: the one generation loads the model at once anyway, and shows it as "loading".
    settings = msgspec.structs.replace(
        settings,
        data_dir=args.data_dir or "",
        output_dir=args.output_dir or "",
        preview=args.preview or "none",
        preload=False,
    )
    with Generator(settings=settings) as sd:
        if args.mask:
            images = sd.inpaint(prompt, args.init_img, args.mask, progress=bar, **options)
        elif args.init_img:
            images = sd.img2img(prompt, args.init_img, progress=bar, **options)
        else:
            images = sd.txt2img(prompt, progress=bar, **options)
        bar.end()
        infos = [image_info(image) for image in images]
        paths = output_paths(args.output, [info.seed for info in infos])
        for info, path in zip(infos, paths, strict=True):
            assert info.path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(info.path, path)  # the service's file: its encoding and infotext
    return [(path, info.seed) for path, info in zip(paths, infos, strict=True)]


def _call(
    url: str, api_key: str | None, body: dict[str, Any] | None = None, *, post: bool = False
) -> Any:
    """One JSON request to the server (POST with a ``body``, or ``post``); its error answer
    becomes an :class:`SdrestError`."""
    import urllib.error  # here: every sdrest command imports this module, few use the network
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    method = "POST" if post or data is not None else "GET"
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=POLL_WAIT + 60) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        raise SdrestError(f"the server answered {exc.code}: {message or exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise SdrestError(f"cannot reach {url}: {exc.reason}") from exc


def _remote(
    args: argparse.Namespace, prompt: str, options: dict[str, Any], bar: ProgressBar
) -> list[tuple[Path, int]]:
    base = args.server.rstrip("/") + "/sdcpp/v1"
    from sdrest.generation import input_b64, request_layer  # Pillow: only when used

    body = request_layer(prompt, model=args.model, **options)
    if args.init_img:
        body["init_image"] = input_b64(args.init_img, "init_img")
    if args.mask:
        body["mask_image"] = input_b64(args.mask, "mask")
    job = _call(f"{base}/img_gen", args.api_key, body)
    job_id = job["id"]
    try:
        while job["status"] not in ("completed", "failed", "cancelled"):
            job = _call(f"{base}/jobs/{job_id}?wait={POLL_WAIT:g}", args.api_key)
            progress = job.get("progress") or {}
            if job["status"] == "generating" and progress.get("phase"):
                bar(progress["step"], progress["steps"], progress["phase"])
    except KeyboardInterrupt:
        _call(f"{base}/jobs/{job_id}/cancel", args.api_key, post=True)
        raise
    bar.end()
    if job["status"] != "completed":
        error = job.get("error") or {}
        raise SdrestError(f"job {job['status']}: {error.get('message', '')}")
    images = job["result"]["images"]
    paths = output_paths(args.output, [image["seed"] for image in images])
    for image, path in zip(images, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(image["b64_json"]))
    return [(path, image["seed"]) for path, image in zip(paths, images, strict=True)]
