"""The ``sdrest`` command. Flags are derived from the settings structs; no logic lives here."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

import msgspec

from sdrest import __version__
from sdrest.errors import SdrestError
from sdrest.settings import Settings, load_settings, setting_fields

logger = logging.getLogger("sdrest")


def _flag_type(annotation: Any) -> tuple[Any, list[str] | None]:
    """(argparse type, choices) for a settings field annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str, [str(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _flag_type(args[0])
    if annotation in (int, float, str):
        return annotation, None
    return str, None


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    groups = {
        None: parser.add_argument_group("server"),
        "load": parser.add_argument_group("model loading (a change reloads the model)"),
        "limits": parser.add_argument_group("request limits"),
        "auth": parser.add_argument_group("authentication"),
        "fetch": parser.add_argument_group("fetching images from URLs"),
    }
    for name, (section, info) in setting_fields().items():
        group = groups[section]
        flag = "--" + name.replace("_", "-")
        env = "SDREST_" + name.upper()
        if info.type is bool:
            group.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"(env {env})",
            )
            continue
        kind, choices = _flag_type(info.type)
        group.add_argument(
            flag,
            dest=name,
            type=kind,
            choices=choices,
            default=None,
            help=f"(env {env}; default {info.default!r})",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="sdrest", description="stable-diffusion.cpp over HTTP")
    parser.add_argument("--version", action="version", version=f"sdrest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (("serve", "run the HTTP server"), ("models", "list the models found")):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("--config", help="TOML config file (env SDREST_CONFIG)")
        _add_setting_flags(sub)
        if command == "models":
            sub.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    flags = {name: getattr(args, name, None) for name in setting_fields()}
    return load_settings(flags, config_file=args.config)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings) -> int:
    """Run the server until interrupted."""
    import uvicorn

    from sdrest.app import create_app

    if not _is_loopback(settings.host):
        logger.warning(
            "binding %s with no authentication: anyone who can reach this address can use the"
            " server",
            settings.host,
        )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
    )
    uvicorn.Server(config).run()
    return 0


def list_models(settings: Settings, as_json: bool) -> int:
    """Print what the registry found."""
    from sdrest.models import ModelRegistry

    registry = ModelRegistry(settings.models_path, settings.presets)
    report = registry.scan()
    entries = registry.entries()
    if as_json:
        sys.stdout.write(msgspec.json.encode(entries).decode() + "\n")
        return 0
    lines = [f"{'NAME':30} {'TYPE':16} {'ARCH':12} {'ROLE':16} SIZE"]
    for e in entries:
        lines.append(
            f"{e.name:30} {e.type:16} {e.architecture:12} {e.role:16} {e.size}"
            + (f"  ! {e.error}" if e.error else "")
        )
    for preset in registry.presets():
        lines.append(f"{preset.name:30} {'preset':16}")
    for warning in getattr(report, "warnings", []):
        lines.append(f"warning: {warning}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdrest`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings_from(args)
    except SdrestError as exc:
        sys.stderr.write(f"sdrest: {exc.message}\n")
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        return serve(settings)
    if args.command == "models":
        return list_models(settings, args.json)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
