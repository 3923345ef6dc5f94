"""``sdrest users`` and ``sdrest keys``: real subprocesses over a temporary data folder, and the
key they print working over HTTP."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
import uvicorn

from sdrest.app import create_app
from sdrest.auth.commands import read_new_password
from sdrest.cli import main, serve
from sdrest.errors import InvalidRequestError
from sdrest.service import SdrestService
from sdrest.settings import load_settings
from tests.fakes import FakeEngine

pytestmark = pytest.mark.slow  # starts processes or servers: scripts/test runs it


def sdrest(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDREST_")}
    return subprocess.run(
        [sys.executable, "-m", "sdrest", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def _capabilities(data_dir: Path, models_dir: Path, headers: dict[str, str]) -> int:
    settings = load_settings(
        {"models_dir": str(models_dir), "data_dir": str(data_dir), "auth_mode": "jwt"}, env={}
    )
    async with SdrestService(settings, engine=FakeEngine()) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.get("/sdcpp/v1/capabilities", headers=headers)).status_code


async def test_users_and_keys_end_to_end(tmp_path: Path, models_dir: Path) -> None:
    data = tmp_path / "state"
    added = sdrest(data, "users", "add", "alice", "--role", "admin", stdin="s3cret-pass\n")
    assert added.returncode == 0, added.stderr
    assert "added admin alice" in added.stdout
    listed = sdrest(data, "users", "list", "--json")
    [alice] = json.loads(listed.stdout)
    assert (alice["username"], alice["role"], alice["local_password"]) == ("alice", "admin", True)
    assert "hash" not in listed.stdout

    created = sdrest(data, "keys", "create", "--user", "alice", "--name", "laptop")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sdr_") and len(key) > 40
    assert await _capabilities(data, models_dir, {"Authorization": f"Bearer {key}"}) == 200

    keys = json.loads(sdrest(data, "keys", "list", "--user", "alice", "--json").stdout)
    assert [(k["name"], k["revoked"]) for k in keys] == [("laptop", None)]
    assert key not in sdrest(data, "keys", "list").stdout
    revoked = sdrest(data, "keys", "revoke", keys[0]["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert await _capabilities(data, models_dir, {"X-API-Key": key}) == 401

    basic = httpx.BasicAuth("alice", "n3w-password")._auth_header
    assert await _capabilities(data, models_dir, {"Authorization": basic}) == 401
    changed = sdrest(data, "users", "passwd", "alice", stdin="n3w-password\n")
    assert changed.returncode == 0, changed.stderr
    assert await _capabilities(data, models_dir, {"Authorization": basic}) == 200

    removed = sdrest(data, "users", "remove", "alice")
    assert removed.returncode == 0 and "removed alice" in removed.stdout
    assert await _capabilities(data, models_dir, {"Authorization": basic}) == 401


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["users", "add", "bob"], "short\n", "at least 8 characters"),
        (["users", "add", "guest"], "long-enough\n", "reserved"),
        (["users", "add", "../x"], "long-enough\n", "a username is"),
        (["users", "remove", "nobody"], "", "user not found: nobody"),
        (["users", "passwd", "nobody"], "long-enough\n", "user not found: nobody"),
        (["keys", "create", "--user", "nobody"], "", "user not found: nobody"),
        (["keys", "revoke", "key_nope"], "", "no active key"),
    ],
)
def test_cli_errors_are_one_clear_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    stdin: str,
    message: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main([*args, "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sdrest: ") and message in err


def test_duplicate_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for expected in (0, 1):
        monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough\n"))
        assert main(["users", "add", "bob", "--data-dir", str(tmp_path)]) == expected
    assert "already exists" in capsys.readouterr().err


def test_no_password_account_and_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sdrest.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-config"}"\n')
    assert main(["users", "add", "carol", "--no-password", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "carol" in out and "external" in out
    assert (tmp_path / "from-config" / "auth.sqlite3").exists()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_password_prompt_on_a_terminal() -> None:
    answers = iter(["tty-password", "tty-password"])
    assert read_new_password(_Tty(), lambda _prompt: next(answers)) == "tty-password"
    answers = iter(["tty-password", "typo-password"])
    with pytest.raises(InvalidRequestError, match="differ"):
        read_new_password(_Tty(), lambda _prompt: next(answers))


@pytest.mark.parametrize(("mode", "warned"), [("none", True), ("jwt", False)])
def test_public_bind_warning_only_without_auth(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    warned: bool,
) -> None:
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    settings = load_settings(
        {"host": "0.0.0.0", "data_dir": str(tmp_path), "auth_mode": mode}, env={}
    )
    with caplog.at_level(logging.WARNING, logger="sdrest"):
        assert serve(settings) == 0
    assert ("no authentication" in caplog.text) is warned


def test_unusable_data_dir_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough\n"))
    assert main(["users", "list", "--data-dir", str(not_a_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sdrest: {not_a_dir}") and "Traceback" not in err


def test_served_with_auth_end_to_end(tmp_path: Path, models_dir: Path) -> None:
    """A real ``sdrest serve --auth-mode jwt``: health is public, the rest needs the key."""
    data = tmp_path / "state"
    sdrest(data, "users", "add", "alice", stdin="s3cret-pass\n")
    key = sdrest(data, "keys", "create", "--user", "alice").stdout.strip().splitlines()[-1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDREST_")}
    args = ["serve", "--models-dir", str(models_dir), "--data-dir", str(data)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdrest", *args, "--port", str(port), "--auth-mode", "jwt"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def status(path: str, headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        for _ in range(600):
            try:
                if status("/api/health") == 200:
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
        assert status("/sdcpp/v1/capabilities") == 401
        assert status("/sdcpp/v1/capabilities", {"X-API-Key": key}) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
