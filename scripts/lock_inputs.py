"""The lock's inputs: what in pyproject.toml decides the locked versions, as one digest.

`scripts/lock` writes the digest into each lock file's header; `scripts/setup` runs this with
`--check` before installing, so a lock that no longer matches pyproject.toml fails at once with a
clear message instead of installing an environment the project does not describe.
Standard library only: it runs before any environment exists.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-runtime.lock", "requirements-build.lock")
MARKER = "# lock-inputs: "


def inputs_digest() -> str:
    """Return the sha256 of the dependency-deciding parts of pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    deciding = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-system": pyproject.get("build-system", {}).get("requires", []),
    }
    return hashlib.sha256(json.dumps(deciding, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    """Return the digest a lock file was made for, or None if it records none."""
    for line in lock.read_text().splitlines()[:10]:
        if line.startswith(MARKER):
            return line[len(MARKER) :].strip()
    return None


def stale_locks() -> list[str]:
    """Return the lock files that are missing or were made for other inputs."""
    want = inputs_digest()
    stale = []
    for name in LOCKS:
        path = ROOT / name
        if not path.is_file() or recorded_digest(path) != want:
            stale.append(name)
    return stale


def main(argv: list[str]) -> int:
    """`--check`: exit 1 naming stale locks; `--stamp`: write the digest into every lock."""
    if argv[:1] == ["--check"]:
        stale = stale_locks()
        if stale:
            sys.stderr.write(
                f"{', '.join(stale)} no longer match pyproject.toml's dependencies.\n"
                "Run scripts/lock (keeps current versions where they still fit) or "
                "scripts/lock --upgrade, then scripts/test, and commit the lock files.\n"
            )
            return 1
        return 0
    if argv == ["--stamp"]:
        digest = inputs_digest()
        for name in LOCKS:
            path = ROOT / name
            lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(MARKER)]
            path.write_text("\n".join([MARKER + digest, *lines]) + "\n")
        return 0
    sys.stderr.write("usage: lock_inputs.py --check | --stamp\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
