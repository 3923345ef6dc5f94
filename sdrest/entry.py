"""The ``sdrest`` command's entry point (and ``python -m sdrest``): a server's engine worker
starts before anything else.

``sdrest serve`` spends its first tenth of a second importing its modules and reading its
settings; a new engine worker spends its first tenth of a second importing the native library.
Started here, first, the worker imports while the server reads its settings, and it is ready
for the default model's load by the time the settings say which model that is
(:mod:`sdrest.head_start` sends it, with the worker's settings, or stops the worker when the
configuration runs no local engine). Only the standard library and :mod:`sdrest.engine.launch`
are imported before the worker starts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from sdrest.engine.launch import LaunchedWorker, launch_worker
from sdrest.errors import SdrestError

logger = logging.getLogger(__name__)

NOT_COMMANDS = ("-h", "--help", "--version")
"""Flags that do not mean "serve" when they come first."""


def serve_implied(argv: Sequence[str]) -> bool:
    """Whether a command line without a sub-command means ``serve`` (flags only, as the
    stable-diffusion.cpp-rest server is started)."""
    return not argv or (argv[0].startswith("-") and argv[0] not in NOT_COMMANDS)


def serves(argv: Sequence[str]) -> bool:
    """Whether the command line runs the server (``serve``, or flags only; not its help)."""
    if any(arg in NOT_COMMANDS for arg in argv):
        return False
    return serve_implied(argv) or argv[0] == "serve"


def early_worker(argv: Sequence[str]) -> LaunchedWorker | None:
    """An engine worker started now when the command line serves; None otherwise."""
    if not serves(argv):
        return None
    try:
        return launch_worker()  # head_start sends it its settings
    except SdrestError as exc:  # the service starts its own, and reports the failure there
        logger.debug("no early engine worker: %s", exc.message)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sdrest`` command (see :func:`sdrest.cli.main`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    early = early_worker(args)
    try:
        from sdrest.cli import main as cli_main

        return cli_main(args, early_worker=early)
    finally:
        if early is not None:
            early.discard()
