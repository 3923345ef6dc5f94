"""PAM is optional: settings that need it fail at start-up, clearly, when it is missing."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from sdrest.app import create_app
from sdrest.auth.pam import AuthSetupError, PamChecker, load_pam, pam_for
from sdrest.cli import main
from sdrest.settings import AuthSettings, load_settings


class FakePam:
    """Stands in for python-pam's ``pam.pam()`` authenticator."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def authenticate(self, username: str, password: str, service: str = "login") -> bool:
        self.calls.append((username, password, service))
        return password == f"{username}-system-pw"


def fake_module() -> SimpleNamespace:
    return SimpleNamespace(pam=FakePam)


@pytest.fixture
def no_pam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pam", None)  # import pam -> ImportError


def test_missing_module_reads_as_none(no_pam: None) -> None:
    assert load_pam() is None


def test_pam_mode_without_pam_is_a_start_up_error(no_pam: None) -> None:
    with pytest.raises(AuthSetupError, match=r"pip install 'sdrest\[pam\]'"):
        pam_for(AuthSettings(auth_mode="pam"))


def test_unix_mode_needs_pam_or_a_trusted_header(no_pam: None) -> None:
    with pytest.raises(AuthSetupError, match="trust-unix-user-header"):
        pam_for(AuthSettings(auth_mode="unix"))
    assert pam_for(AuthSettings(auth_mode="unix", trust_unix_user_header=True)) is None


@pytest.mark.parametrize("mode", ["none", "jwt", "api-key", "optional"])
def test_other_modes_never_need_pam(no_pam: None, mode: str) -> None:
    assert pam_for(AuthSettings(auth_mode=mode)) is None  # type: ignore[arg-type]


def test_checker_uses_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pam", fake_module())
    checker = pam_for(AuthSettings(auth_mode="pam"))
    assert isinstance(checker, PamChecker)
    assert checker.authenticate("carol", "carol-system-pw")
    assert not checker.authenticate("carol", "wrong")


def test_a_crashing_pam_reads_as_no(caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> object:
        raise OSError("libpam.so missing")

    checker = PamChecker(SimpleNamespace(pam=boom))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        assert not checker.authenticate("carol", "pw")
    assert "PAM check" in caplog.text


def test_create_app_fails_at_start_up(no_pam: None, tmp_path: Path) -> None:
    settings = load_settings({"data_dir": str(tmp_path), "auth_mode": "pam"}, env={})
    with pytest.raises(AuthSetupError):
        create_app(settings)


def test_serve_says_what_to_install(
    no_pam: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--data-dir", str(tmp_path), "--auth-mode", "pam", "--port", "1"])
    assert code == 2
    assert "sdrest[pam]" in capsys.readouterr().err
