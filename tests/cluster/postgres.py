"""A private PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temporary folder.

Debian's binaries (``apt-get install postgresql``, which ``scripts/test`` does when it can) live
in ``/usr/lib/postgresql/<version>/bin``. The server listens on a unix socket in its own folder
only. PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` user.
``SDREST_TEST_DATABASE_URL`` names a server to use instead (its databases are made per test).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

_names = itertools.count(1)


def find_bin_dir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``, or None."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(found[0]).parent if found else None


class PrivatePostgres:
    """One server in a temporary folder; ``stop``/``start`` restart it (failure tests)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="sdrest-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.socket_dir.mkdir()
        self.port = 5432
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            owner = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            for path in (self.root, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        options = (
            f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        """The server's maintenance database URL."""
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def cleanup(self) -> None:
        """Stop the server and remove its folder."""
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def unavailable(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; under CI fail instead."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}: CI runs the PostgreSQL tests, it does not skip them")
    pytest.skip(reason)


def server_url() -> Iterator[tuple[str, PrivatePostgres | None]]:
    """The base URL of a server (and the private server, when one was started)."""
    given = os.environ.get("SDREST_TEST_DATABASE_URL", "")
    if given:
        yield given, None
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable(
            "PostgreSQL is not installed (apt-get install postgresql, or set"
            " SDREST_TEST_DATABASE_URL)"
        )
        return
    server = PrivatePostgres(bin_dir)
    try:
        server.start()
        yield server.url, server
    finally:
        server.cleanup()


def fresh_database(base_url: str) -> str:
    """A new empty database on the server at ``base_url``; its URL."""
    name = f"sdrest_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path="/" + name))


def drop_database(base_url: str, url: str) -> None:
    """Drop a database :func:`fresh_database` made (its connections closed first)."""
    name = urlsplit(url).path.lstrip("/")
    with contextlib.suppress(psycopg.Error), psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
