"""The ``sdrest`` command. Flags are derived from the settings structs; no logic lives here."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sqlite3
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

import msgspec

from sdrest import __version__, cli_generate, cli_pull
from sdrest.errors import SdrestError
from sdrest.logs import configure_logging, log_config, log_level
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
        "engine": parser.add_argument_group("the engine (worker process, memory)"),
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
    _add_account_commands(commands)
    cli_generate.add_parser(commands, _add_setting_flags)
    cli_pull.add_pull_command(commands)
    return parser


def _state_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (env SDREST_CONFIG)")
    parser.add_argument("--data-dir", dest="data_dir", help="state folder (env SDREST_DATA_DIR)")


def _add_account_commands(commands: Any) -> None:
    """``users`` and ``keys``: each action takes only ``--config`` and ``--data-dir``."""

    def action(group: Any, name: str, text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=text)
        _state_flags(sub)
        return sub

    users = commands.add_parser("users", help="manage accounts (auth modes other than none)")
    user_actions = users.add_subparsers(dest="action", required=True)
    add = action(user_actions, "add", "add an account (password from stdin or a prompt)")
    add.add_argument("name")
    add.add_argument("--role", choices=["user", "admin"], default="user")
    add.add_argument(
        "--no-password",
        action="store_true",
        help="an account checked by PAM or a trusted proxy only (to give it a role)",
    )
    action(user_actions, "list", "list accounts").add_argument(
        "--json", action="store_true", help="print JSON"
    )
    action(user_actions, "remove", "remove an account and its keys").add_argument("name")
    action(user_actions, "passwd", "set a new password (stdin or a prompt)").add_argument("name")

    keys = commands.add_parser("keys", help="manage API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = action(key_actions, "create", "create a key (printed as the last line)")
    create.add_argument("--user", required=True)
    create.add_argument("--name", default="", help="a label to tell keys apart")
    listing = action(key_actions, "list", "list keys (never the keys themselves)")
    listing.add_argument("--user", default=None)
    listing.add_argument("--json", action="store_true", help="print JSON")
    action(key_actions, "revoke", "revoke a key").add_argument("key_id")


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
    from sdrest.http_server import server_config

    if settings.auth.auth_mode == "none" and not _is_loopback(settings.host):
        logger.warning(
            "binding %s with no authentication: anyone who can reach this address can use the"
            " server",
            settings.host,
        )
    try:
        app = create_app(settings)
    except SdrestError as exc:  # auth settings this machine cannot honour (PAM missing)
        sys.stderr.write(f"sdrest: {exc.message}\n")
        return 2
    config = server_config(
        app,
        settings,
        log_level=log_level(settings.log_level),
        # One format for uvicorn's lines and ours (sdrest.logs); sdrest.access replaces
        # uvicorn's access log.
        log_config=log_config(settings),
        access_log=False,
        lifespan="on",
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C (the worker is stopped, the queue kept on
        # disk), then raises the signal again for the exit status: say it without a traceback.
        return 130
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
    try:
        configure_logging(settings)
    except SdrestError as exc:  # an unknown --log-level
        sys.stderr.write(f"sdrest: {exc.message}\n")
        return 2
    if args.command == "serve":
        return serve(settings)
    if args.command == "models":
        return list_models(settings, args.json)
    if args.command == "generate":
        return cli_generate.run(args, settings)
    if args.command == "pull":
        return cli_pull.pull_command(args, settings)
    try:
        return accounts(args, settings)
    except SdrestError as exc:
        sys.stderr.write(f"sdrest: {exc.message}\n")
        return 1
    except (OSError, sqlite3.Error) as exc:  # an unwritable data folder, a corrupt database
        sys.stderr.write(f"sdrest: {settings.data_path}: {exc}\n")
        return 1


def accounts(args: argparse.Namespace, settings: Settings) -> int:
    """``sdrest users …`` and ``sdrest keys …``."""
    from sdrest.auth import commands as run

    store = run.store_for(settings.data_path)
    out = sys.stdout

    def password() -> str:
        return run.read_new_password(sys.stdin)

    match args.command, args.action:
        case "users", "add":
            reader = None if args.no_password else password
            return run.users_add(store, args.name, args.role, reader, out)
        case "users", "list":
            return run.users_list(store, out, as_json=args.json)
        case "users", "remove":
            return run.users_remove(store, args.name, out)
        case "users", "passwd":
            return run.users_passwd(store, args.name, password, out)
        case "keys", "create":
            return run.keys_create(store, args.user, args.name, out)
        case "keys", "list":
            return run.keys_list(store, out, args.user, as_json=args.json)
        case "keys", "revoke":
            return run.keys_revoke(store, args.key_id, out)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
