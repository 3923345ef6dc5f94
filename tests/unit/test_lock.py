"""The lock files: they pin every requirement of pyproject.toml to a version inside its range,
and a change to pyproject.toml's dependencies makes scripts/setup stop with a clear message."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements.lock", "requirements-runtime.lock", "requirements-build.lock")
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)")


def _pins(lock: str) -> dict[str, list[Version]]:
    pins: dict[str, list[Version]] = {}
    for line in (ROOT / lock).read_text().splitlines():
        if match := PIN.match(line):
            pins.setdefault(canonicalize_name(match[1]), []).append(Version(match[2]))
    return pins


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _requirements(*, extras: bool) -> list[Requirement]:
    project = _project()
    names = list(project["dependencies"])  # type: ignore[call-overload]
    if extras:
        for group in project["optional-dependencies"].values():  # type: ignore[attr-defined]
            names.extend(group)
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", True), ("requirements-runtime.lock", False)]
)
def test_every_requirement_is_pinned_inside_its_range(lock: str, extras: bool) -> None:
    pins = _pins(lock)
    for requirement in _requirements(extras=extras):
        versions = pins.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in {lock}: run scripts/lock"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {requirement.name}=={version}, outside {requirement}"
            )


def test_runtime_and_full_lock_agree_on_every_shared_version() -> None:
    full, runtime = _pins("requirements.lock"), _pins("requirements-runtime.lock")
    assert set(runtime) <= set(full)
    for name, versions in runtime.items():
        assert versions == full[name], name


def test_every_pin_carries_hashes() -> None:
    for lock in LOCKS:
        text = (ROOT / lock).read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), lock


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "lock_inputs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_changed_dependency_makes_the_locks_stale(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lock_inputs.py", tmp_path / "scripts")
    for name in ("pyproject.toml", *LOCKS):
        shutil.copy(ROOT / name, tmp_path / name)
    assert _check(tmp_path).returncode == 0  # the committed locks match the committed inputs

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"msgspec>=0.18"', '"msgspec>=0.19"'))
    stale = _check(tmp_path)
    assert stale.returncode == 1
    assert "requirements.lock" in stale.stderr and "scripts/lock" in stale.stderr

    # A change outside the dependency tables (the description, a tool's settings) is not one.
    shutil.copy(ROOT / "pyproject.toml", pyproject)
    pyproject.write_text(pyproject.read_text().replace("line-length = 100", "line-length = 99"))
    assert _check(tmp_path).returncode == 0
