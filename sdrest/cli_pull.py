"""``sdrest pull <owner/name>[/<file>] [<file>...]``: models from the Hugging Face hub.

Downloads with huggingface_hub (resume, size checks, its progress bar) plus a SHA-256 check, puts
each file in the typed folder its header says, and writes a preset into the config file when the
files make one model of a known family (Flux.2-klein, Flux, SD3.5, Qwen-Image, Z-Image).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from sdrest.errors import SdrestError
from sdrest.settings import Settings


def add_pull_command(commands: Any) -> None:
    """Register ``pull`` on the ``sdrest`` sub-command parser."""
    sub: argparse.ArgumentParser = commands.add_parser(
        "pull",
        help="download models from the Hugging Face hub into the models folder",
        description="Download model files from a Hugging Face hub repository, place each in the"
        " typed folder its header says, and write a preset for a model made of several files.",
    )
    sub.add_argument("ref", help="owner/name, or owner/name/path/to/file.safetensors for one file")
    sub.add_argument("files", nargs="*", help="more files of the same repository")
    sub.add_argument("--all", action="store_true", help="every weight file of the repository")
    sub.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    sub.add_argument(
        "--token", default=None, help="hub token for gated or private repositories (env HF_TOKEN)"
    )
    sub.add_argument("--config", help="TOML config file presets are written to (env SDREST_CONFIG)")
    sub.add_argument(
        "--models-dir", dest="models_dir", default=None, help="(env SDREST_MODELS_DIR)"
    )


def pull_command(
    args: argparse.Namespace,
    settings: Settings,
    out: TextIO | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run a pull and say what it wrote; 2 when the repository needs a file named."""
    from sdrest.models.hashing import HASH_CACHE, HashCache
    from sdrest.models.hub import pull
    from sdrest.models.pull import ChoiceNeededError, PullOptions, parse_ref

    out = out or sys.stdout
    env = dict(os.environ) if env is None else env
    config = args.config or env.get("SDREST_CONFIG")
    options = PullOptions(
        models_dir=settings.models_path,
        config_file=Path(config).expanduser() if config else None,
        revision=args.revision,
        token=args.token or env.get("HF_TOKEN") or None,
        all_files=args.all,
        quiet=False,
        presets=frozenset(settings.presets),
    )
    try:
        ref = parse_ref(args.ref, args.files)
        outcome = pull(ref, options)
    except ChoiceNeededError as exc:
        lines = [f"{exc.repo} holds {len(exc.files)} weight files; pull one of them:"]
        lines += [f"  sdrest pull {exc.repo}/{f.path}  ({_size(f.size)})" for f in exc.files]
        lines.append(f"or all of them: sdrest pull {exc.repo} --all")
        out.write("\n".join(lines) + "\n")
        return 2
    except SdrestError as exc:
        sys.stderr.write(f"sdrest: {exc.message}\n")
        return 1
    # Hashed while checked: the server's hash cache gets them, so it need not read them again.
    HashCache(settings.data_path / HASH_CACHE).remember(outcome.digests())
    out.write("\n".join(outcome.messages) + "\n")
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
