"""The ``sdrest`` command. Flags are derived from the settings structs; no logic lives here."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sqlite3
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

import msgspec

from sdrest import __version__, cli_generate, cli_pull
from sdrest.cpu_cores import physical_cores
from sdrest.engine.launch import LaunchedWorker
from sdrest.entry import serve_implied
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


def _default_meaning(name: str) -> str:
    """What a default stands for on this machine, where that is worth saying."""
    if name == "threads":
        return f" = one per physical core: {physical_cores()} here"
    return ""


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
            help=f"(env {env}; default {info.default!r}{_default_meaning(name)})",
        )


def _add_compat_flags(parser: argparse.ArgumentParser) -> None:
    """The stable-diffusion.cpp-rest server's flags, so its command lines work unchanged."""
    group = parser.add_argument_group("stable-diffusion.cpp-rest names")
    group.add_argument("--auth", dest="auth_mode", help="same as --auth-mode")
    group.add_argument("--model-dir", dest="models_dir", help="same as --models-dir")
    group.add_argument(
        "--checkpoints",
        metavar="FOLDER",
        help="checkpoints sub-folder of the models folder (files outside the typed folders are"
        " typed by their headers, so this only checks that it exists)",
    )
    group.add_argument(
        "--enable-unix-auth", action="store_true", help="deprecated: use --auth unix"
    )
    group.add_argument("--enable-pam-auth", action="store_true", help="deprecated: use --auth pam")
    group.add_argument("--verbose", action="store_true", help="same as --log-level debug")


def _apply_compat_flags(args: argparse.Namespace) -> list[str]:
    """Fold the stable-diffusion.cpp-rest flags into the settings flags; returns the
    deprecation notes to log once logging is set up."""
    notes = []
    for flag, mode in (("enable_unix_auth", "unix"), ("enable_pam_auth", "pam")):
        if getattr(args, flag, False):
            notes.append(f"--{flag.replace('_', '-')} is deprecated: use --auth {mode}")
            args.auth_mode = args.auth_mode or mode
    if getattr(args, "verbose", False):
        args.log_level = args.log_level or "debug"
    return notes


def _report_compat_flags(settings: Settings, notes: list[str], folder: str | None) -> None:
    """Log the deprecation notes and what ``--checkpoints`` amounts to."""
    for note in notes:
        logger.warning("%s", note)
    if folder is None:
        return
    path = settings.models_path / folder
    if not path.is_dir():
        logger.warning("--checkpoints %s: %s is not a folder", folder, path)
    elif path.name.lower() not in ("checkpoints", "stable-diffusion"):
        logger.info("--checkpoints %s: its files are typed by their headers", folder)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="sdrest", description="stable-diffusion.cpp over HTTP")
    parser.add_argument("--version", action="version", version=f"sdrest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("serve", "run the HTTP server"),
        ("worker", "run engine workers only, on the shared queue (needs --database-url)"),
        ("models", "list the models found"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("--config", help="TOML or JSON config file (env SDREST_CONFIG)")
        _add_setting_flags(sub)
        _add_compat_flags(sub)
        if command == "models":
            sub.add_argument("--json", action="store_true", help="print JSON")
    _add_account_commands(commands)
    cli_generate.add_parser(commands, _add_setting_flags)
    cli_pull.add_pull_command(commands)
    return parser


def _state_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (env SDREST_CONFIG)")
    parser.add_argument("--data-dir", dest="data_dir", help="state folder (env SDREST_DATA_DIR)")
    parser.add_argument(
        "--database-url",
        dest="database_url",
        help="the cluster PostgreSQL database, accounts live there (env SDREST_DATABASE_URL)",
    )


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


def serve(
    settings: Settings,
    argv: Sequence[str] | None = None,
    early_worker: LaunchedWorker | None = None,
) -> int:
    """Run the server until interrupted. ``POST /api/system/restart`` stops it gracefully and
    re-executes ``sdrest <argv>`` (the same process id; queued jobs are recovered from disk).
    ``early_worker``: an engine worker started before the settings were read (sdrest/entry.py).
    """
    from sdrest.head_start import head_start

    # First: the engine worker imports the library and loads the default model while this
    # process imports the web stack below.
    head = head_start(settings, early_worker)
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
        if head is None:
            app = create_app(settings)
        else:
            app = create_app(settings, engine=head.engine, registry=head.registry)
    except SdrestError as exc:  # auth settings this machine cannot honour (PAM missing)
        if head is not None:
            head.abandon()
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
    server = uvicorn.Server(config)
    restart: list[bool] = []

    def request_restart() -> None:
        restart.append(True)
        server.should_exit = True

    app.state.service.restart_hook = request_restart
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C (the worker is stopped, the queue kept on
        # disk), then raises the signal again for the exit status: say it without a traceback.
        return 130
    if restart:
        command = [sys.executable, "-m", "sdrest", *(sys.argv[1:] if argv is None else argv)]
        logger.info("re-executing: %s", " ".join(command))
        os.execv(sys.executable, command)
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


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parsed arguments ("serve" when only flags are given) and the deprecation notes."""
    argv = list(argv)
    if serve_implied(argv):
        argv.insert(0, "serve")
    args = build_parser().parse_args(argv)
    return args, _apply_compat_flags(args)


def main(
    argv: Sequence[str] | None = None, *, early_worker: LaunchedWorker | None = None
) -> int:
    """Run the ``sdrest`` command (the console script enters through :mod:`sdrest.entry`).
    With flags and no sub-command it serves (``sdrest --models-dir m``, as the
    stable-diffusion.cpp-rest server is started)."""
    args, notes = _parse(sys.argv[1:] if argv is None else argv)
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
    _report_compat_flags(settings, notes, getattr(args, "checkpoints", None))
    if args.command == "serve":
        return serve(settings, argv, early_worker)
    if args.command == "worker":
        from sdrest import cli_worker

        return cli_worker.run(settings)
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
    from sdrest.auth.users import open_user_store

    store = open_user_store(settings)  # PostgreSQL with --database-url
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
